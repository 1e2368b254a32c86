"""Character-level LM: splits, vocabulary, file layouts, stream batching, evaluation segments,
bits per character, the cache, and the shipped gensim sample."""

import math
import os

import numpy as np
import pytest
import torch

from armin.config import from_mapping
from armin.errors import ConfigError
from armin.tasks import CharLMConfig, CharLMTask, DataError, build_task
from armin.tasks import char_lm as char_lm_module
from armin.tasks.char_lm import ENWIK8_SPLIT, split_sizes

TEXT = b"".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n".encode() for i in range(60))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def text_task(tmp_path, text: bytes = TEXT, **cfg) -> CharLMTask:
    (tmp_path / "text.txt").write_bytes(text)
    return build_task(CharLMConfig(data_dir=str(tmp_path), files=("text.txt",), **cfg))


def decode(task: CharLMTask, ids: torch.Tensor) -> bytes:
    return bytes(task.vocab[i - 1] for i in ids.tolist())  # no unknown ids in these tests


# ---------------------------------------------------------------- data, splits and vocabulary


def test_one_file_is_split_90_5_5_percent_and_the_vocabulary_is_the_training_bytes(tmp_path):
    task = text_task(tmp_path)
    n = len(TEXT)
    held = int(n * 0.05)
    assert len(task.train_ids) == n - 2 * held and len(task.eval_ids) == held
    assert task.vocab == bytes(sorted(set(TEXT[:n - 2 * held])))
    assert task.input_size == task.output_size == len(task.vocab) + 1  # + the unknown id 0
    assert decode(task, task.train_ids) == TEXT[:n - 2 * held]
    assert decode(task, task.eval_ids) == TEXT[n - 2 * held:n - held]
    assert task.data_source == f"file:{(tmp_path / 'text.txt').resolve()}"
    assert (task.metric, task.higher_is_better, task.carries_state) == ("bpc", False, True)


def test_enwik8_sized_files_get_the_90m_5m_5m_split():
    assert split_sizes(None, 100_000_000, None) == ENWIK8_SPLIT == (90_000_000, 5_000_000, 5_000_000)
    assert split_sizes(None, 10**9, None) == ENWIK8_SPLIT  # enwik9: the same first 100M bytes
    assert split_sizes(None, 1000, None) == (900, 50, 50)
    assert split_sizes(None, 1000, (10, 20, 30)) == (10, 20, 30)


def test_explicit_split_bytes_and_eval_split_test(tmp_path):
    task = text_task(tmp_path, split_bytes=(1000, 200, 300), eval_split="test")
    assert len(task.train_ids) == 1000 and decode(task, task.eval_ids) == TEXT[1200:1500]
    with pytest.raises(DataError, match=f"text.txt: has {len(TEXT)} symbols, fewer than split_bytes"):
        text_task(tmp_path, split_bytes=(len(TEXT), 5, 5))


def test_symbols_unseen_in_training_are_the_unknown_id(tmp_path):
    task = text_task(tmp_path, TEXT + b"#" * 400, split_bytes=(len(TEXT), 200, 200))
    assert ord("#") not in task.vocab
    assert (task.eval_ids == 0).all()


def test_three_files_ptb_char_layout_is_found_and_read_as_spaced_symbols(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.char.{split}.txt").write_bytes(b" a e r _ b a n k\n t h e _ c a t\n" * 10)
    task = build_task(CharLMConfig(data_dir=str(tmp_path)))
    assert decode(task, task.train_ids) == b"aer_bank\nthe_cat\n" * 10
    assert task.data_source == (f"files:{tmp_path.resolve()}/{{ptb.char.train.txt,ptb.char.valid.txt,"
                                f"ptb.char.test.txt}}")
    as_bytes = build_task(CharLMConfig(data_dir=str(tmp_path), symbols="bytes"))
    assert ord(" ") in as_bytes.vocab


def test_spaced_files_must_hold_one_symbol_per_token(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.char.{split}.txt").write_bytes(b" a e r _ bank\n" * 10)
    with pytest.raises(DataError, match=r"ptb.char.train.txt: not space-separated symbols: b'ba' at byte 9"):
        build_task(CharLMConfig(data_dir=str(tmp_path)))


def test_missing_files_and_unknown_layouts_are_one_line(tmp_path):
    with pytest.raises(DataError, match=f"^{tmp_path / 'nowhere'}: not a folder"):
        build_task(CharLMConfig(data_dir=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match=r"no text files found \(looked for: enwik8; text8; ptb.char.train.txt \+ "):
        build_task(CharLMConfig(data_dir=str(tmp_path)))
    with pytest.raises(DataError, match=f"^{tmp_path / 'enwik9'}: not found"):
        build_task(CharLMConfig(data_dir=str(tmp_path), files=("enwik9",)))
    (tmp_path / "enwik8.bz2").write_bytes(b"BZh9 this is not bzip2")
    with pytest.raises(DataError, match="enwik8.bz2: corrupt: not a valid bzip2 file"):
        build_task(CharLMConfig(data_dir=str(tmp_path), files=("enwik8.bz2",)))
    (tmp_path / "tiny").write_bytes(b"abcdefghij")
    with pytest.raises(DataError, match="tiny: the valid split has 0 symbols; at least 2 are needed"):
        build_task(CharLMConfig(data_dir=str(tmp_path), files=("tiny",)))


def test_enwik8_is_detected_in_data_dir(tmp_path):
    (tmp_path / "enwik8").write_bytes(TEXT)
    assert build_task(CharLMConfig(data_dir=str(tmp_path))).data_source == f"file:{(tmp_path / 'enwik8').resolve()}"


def test_config_validation():
    with pytest.raises(ConfigError, match=r"files: give one file or three"):
        CharLMConfig(data_dir="/d", files=("a", "b"))
    with pytest.raises(ConfigError, match="files: needs data_dir"):
        CharLMConfig(files=("enwik8",))
    with pytest.raises(ConfigError, match="split_bytes: only applies to a single file"):
        CharLMConfig(data_dir="/d", files=("a", "b", "c"), split_bytes=(1, 2, 3))
    with pytest.raises(ConfigError, match=r"split_bytes: expected \(train, valid, test\) byte counts"):
        CharLMConfig(split_bytes=(10, 10))
    with pytest.raises(ConfigError, match="bptt: must be >= 1, got 0"):
        CharLMConfig(bptt=0)
    cfg = from_mapping(CharLMConfig, {"name": "char_lm", "data_dir": "/d", "files": ["enwik8"],
                                      "split_bytes": [9, 5, 5], "bptt": 50})
    assert cfg.files == ("enwik8",) and cfg.split_bytes == (9, 5, 5) and cfg.bptt == 50


# ---------------------------------------------------------------- training batches: contiguous streams


def test_batches_are_one_hot_segments_whose_targets_are_the_next_symbol(tmp_path):
    task = text_task(tmp_path, bptt=7)
    batch = task.sample(3, gen())
    assert batch.inputs.shape == (7, 3, task.input_size) and batch.targets.shape == (7, 3)
    assert torch.equal(batch.inputs.sum(-1), torch.ones(7, 3))  # one-hot
    ids = batch.inputs.argmax(-1)  # (T, B)
    assert torch.equal(ids[1:], batch.targets[:-1])  # the target at step t is the input at t+1
    train = decode(task, task.train_ids)
    for b in range(3):  # each stream is a contiguous piece of the training text
        piece = decode(task, torch.cat([ids[:, b], batch.targets[-1:, b]]))
        assert piece in train + train[:8]


def test_consecutive_batches_continue_the_streams_until_a_pass_ends(tmp_path):
    task = text_task(tmp_path, bptt=10)
    n, B = len(task.train_ids), 4
    per_pass = (n // B - 1) // 10
    g = gen()
    batches, starts = [], []
    for _ in range(per_pass + 1):
        batches.append(task.sample(B, g))
        starts.append(task.starts.clone())
    assert [b.reset for b in batches] == [True] + [False] * (per_pass - 1) + [True]
    for prev, nxt in zip(batches[:per_pass - 1], batches[1:per_pass]):
        assert torch.equal(nxt.inputs[0].argmax(-1), prev.targets[-1])  # continues where the last one stopped
    # The streams start n // B apart; a new pass rotates them by a new offset from the generator.
    assert torch.equal(starts[0].diff(), torch.full((B - 1,), n // B))
    assert all(torch.equal(s, starts[0]) for s in starts[:per_pass])
    assert not torch.equal(starts[-1], starts[0]) and torch.equal(starts[-1].diff(), starts[0].diff())
    first = task.train_ids[starts[-1] % n].long()
    assert torch.equal(batches[-1].inputs[0].argmax(-1), first)


def test_batches_come_only_from_the_generator(tmp_path):
    a, b, c = (text_task(tmp_path, bptt=5) for _ in range(3))
    ga, gb, gc = gen(1), gen(1), gen(2)
    for _ in range(40):
        x, y, z = a.sample(4, ga), b.sample(4, gb), c.sample(4, gc)
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets) and x.reset == y.reset
    assert not torch.equal(x.inputs, z.inputs)


def test_too_short_training_text_for_the_batch_is_a_config_error(tmp_path):
    task = text_task(tmp_path, bptt=100)
    with pytest.raises(ConfigError, match=r"bptt: the training split has \d+ symbols, too few for batch_size 64"):
        task.sample(64, gen())


# ---------------------------------------------------------------- evaluation: the whole split in segments


def test_eval_segments_cover_the_split_as_contiguous_streams(tmp_path):
    task = text_task(tmp_path, bptt=6, eval_split="test")
    n = len(task.eval_ids)
    segments = task.eval_set(0, 4, gen())
    L = (n - 1) // 4
    assert len(segments) == math.ceil(L / 6)
    assert [s.reset for s in segments] == [True] + [False] * (len(segments) - 1)
    assert sum(task.eval_weight(s) for s in segments) == 4 * L  # every scored symbol once
    assert segments[-1].targets.shape[0] == L - 6 * (len(segments) - 1)  # the last segment may be shorter
    targets = torch.cat([s.targets for s in segments])  # (L, 4)
    inputs = torch.cat([s.inputs.argmax(-1) for s in segments])
    for b in range(4):
        assert torch.equal(targets[:, b], task.eval_ids[b * L + 1:b * L + L + 1].long())
        assert torch.equal(inputs[:, b], task.eval_ids[b * L:b * L + L].long())
    with pytest.raises(IndexError):
        segments[len(segments)]


def test_eval_set_is_fixed_and_eval_limit_cuts_it(tmp_path):
    task = text_task(tmp_path, bptt=5)
    a, b = task.eval_set(1, 3, gen(0)), task.eval_set(999, 3, gen(5))
    assert all(torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets) for x, y in zip(a, b))
    limited = text_task(tmp_path, bptt=5, eval_limit=31)
    assert sum(limited.eval_weight(s) for s in limited.eval_set(0, 3, gen())) == 30  # 3 streams x 10
    assert sum(limited.eval_weight(s) for s in limited.eval_set(0, 1, gen())) == 31


def test_loss_scores_every_step_and_bpc_is_nats_over_ln2(tmp_path):
    task = text_task(tmp_path, bptt=4)
    batch = task.sample(2, gen())
    uniform = torch.zeros(4, 2, task.output_size)
    metrics = task.metrics(uniform, batch)
    assert metrics["loss"] == pytest.approx(math.log(task.output_size))
    assert metrics["bpc"] == pytest.approx(math.log2(task.output_size))
    right_at_last_step_only = uniform.clone()
    right_at_last_step_only[-1, torch.arange(2), batch.targets[-1]] = 100.0
    assert task.loss(right_at_last_step_only, batch) == pytest.approx(0.75 * math.log(task.output_size), rel=1e-4)


# ---------------------------------------------------------------- the cache and the shipped sample


def test_prepared_text_is_cached_and_invalidated_when_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMIN_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    data.mkdir()
    first = text_task(data)
    with monkeypatch.context() as m:
        m.setattr(char_lm_module, "read_bytes", lambda path: pytest.fail("the cache should have been used"))
        again = build_task(CharLMConfig(data_dir=str(data), files=("text.txt",)))
    assert torch.equal(first.train_ids, again.train_ids) and first.vocab == again.vocab
    (data / "text.txt").write_bytes(TEXT.upper())
    os.utime(data / "text.txt", ns=(1, 1))
    changed = build_task(CharLMConfig(data_dir=str(data), files=("text.txt",)))
    assert decode(changed, changed.train_ids) == TEXT.upper()[:len(changed.train_ids)]
    other_split = build_task(CharLMConfig(data_dir=str(data), files=("text.txt",), split_bytes=(100, 10, 10)))
    assert len(other_split.train_ids) == 100  # the parsing options are part of the key
    assert len(list((tmp_path / "cache").glob("char-lm-*.npz"))) == 3


def test_without_data_dir_the_gensim_wikipedia_sample_is_used_and_labelled():
    task = build_task(CharLMConfig())
    assert task.data_source == "gensim-enwiki-sample-6MB"
    n = 6_089_746  # bytes of the decompressed excerpt
    held = int(n * 0.05)
    assert len(task.train_ids) == n - 2 * held and len(task.eval_ids) == held
    assert 150 < task.input_size <= 257
    assert decode(task, task.train_ids[:10]) == b"<mediawiki"
    assert np.all(task.train_ids.numpy() > 0)  # every training symbol is in the vocabulary
