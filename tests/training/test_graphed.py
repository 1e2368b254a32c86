"""The trainer's CUDA-graph hook (armin.training.graphed) on CPU.

The capture is `capture_eager`, a mock of the CUDA-only part (its "replay" reruns the pass on the
static buffers): what is tested is the hook's wiring, i.e. that a graphed run draws the same batches
and Gumbel noise, gets the same gradients and so records exactly the eager run's history.
"""

import torch

import armin.training.trainer as trainer_module
from armin.model import ModelConfig, build_model
from armin.model.graphs import ENV, capture_eager
from armin.tasks import CopyConfig, build_task
from armin.training import RunConfig, TrainConfig, train
from armin.training.graphed import graphed_pass

RUN = RunConfig(task=CopyConfig(max_len=4), model=ModelConfig(hidden_size=8, n_slots=4, r_size=4),
                train=TrainConfig(steps=6, batch_size=4, eval_every=3, eval_sequences=8, eval_batch_size=4), seed=3)


def test_a_graphed_run_records_exactly_the_eager_runs_history(monkeypatch):
    eager = train(RUN)
    made = []

    def forced(*args, **kw):
        made.append(graphed_pass(*args, force=True, capture=capture_eager))
        return made[-1]

    monkeypatch.setattr(trainer_module, "graphed_pass", forced)
    graphed = train(RUN)
    assert made[0] is not None and made[0].captures >= 1  # the graph path really ran
    assert graphed.history == eager.history and graphed.status == eager.status == "completed"


def test_off_on_cpu_even_when_the_setting_is_on(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    model = torch.nn.Linear(1, 1)
    task = build_task(RUN.task)
    armin = build_model(RUN.model, task.input_size, task.output_size, seed=0)
    assert graphed_pass(armin, task, RUN, torch.device("cpu"), list(armin.parameters())) is None
    assert graphed_pass(model, task, RUN, torch.device("cuda"), list(model.parameters()), force=True) is None
