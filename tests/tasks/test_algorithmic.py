"""The bit tasks' generators (reference §8), presentation (§7.1), loss and bits error."""

import math

import pytest
import torch

from armin.config import from_mapping
from armin.errors import ConfigError
from armin.tasks import (
    TASK_NAMES,
    AssociativeRecallConfig,
    Batch,
    CopyConfig,
    PrioritySortConfig,
    RepeatCopyConfig,
    SeqDigitsConfig,
    build_task,
)

ALGORITHMIC = [
    CopyConfig(),
    RepeatCopyConfig(),
    AssociativeRecallConfig(),
    PrioritySortConfig(),
    PrioritySortConfig(legacy_column_sort=True),
]
N_DRAWS = 200  # batches drawn when a test needs every allowed value to appear


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def split(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The task rows and the answer phase of a batch's inputs."""
    t_out = batch.targets.shape[0]
    return batch.inputs[:-t_out], batch.inputs[-t_out:]


# ---------------------------------------------------------------- contract, every bit task


@pytest.mark.parametrize("cfg", ALGORITHMIC, ids=lambda c: f"{c.name}")
class TestBitTaskContract:
    def test_shapes_dtypes_and_sizes(self, cfg):
        task = build_task(cfg)
        batch = task.sample(3, gen())
        assert batch.inputs.dtype == batch.targets.dtype == torch.float32
        assert batch.inputs.shape[1:] == (3, task.input_size)
        assert batch.targets.shape[1:] == (3, task.output_size)
        assert (task.metric, task.higher_is_better) == ("bits_error", False)

    def test_answer_phase_is_all_zero_and_as_long_as_the_target(self, cfg):
        batch = build_task(cfg).sample(3, gen())
        rows, answer = split(batch)
        assert answer.shape[0] == batch.targets.shape[0]
        assert not answer.any()
        assert rows[-1].any()  # the answer phase starts right after the task's last row

    def test_targets_are_bits(self, cfg):
        targets = build_task(cfg).sample(4, gen()).targets
        assert ((targets == 0) | (targets == 1)).all()

    def test_same_seed_same_batch_different_seed_different(self, cfg):
        task = build_task(cfg)
        a, b, c = (task.sample(4, gen(s)) for s in (7, 7, 8))
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
        assert a.inputs.shape != c.inputs.shape or not torch.equal(a.inputs, c.inputs)

    def test_eval_set_has_ceil_batches_and_is_reproducible(self, cfg):
        task = build_task(cfg)
        first, again = task.eval_set(10, 4, gen(3)), task.eval_set(10, 4, gen(3))
        assert len(first) == math.ceil(10 / 4) and all(b.batch_size == 4 for b in first)
        assert all(torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets) for x, y in zip(first, again))


def test_build_task_dispatches_every_name():
    configs = [*ALGORITHMIC[:4], SeqDigitsConfig()]
    assert tuple(c.name for c in configs) == TASK_NAMES[:5]  # the data-set tasks: tests/tasks/test_mnist.py, test_char_lm.py
    assert [type(build_task(c)).__name__ for c in configs] == [
        "CopyTask", "RepeatCopyTask", "AssociativeRecallTask", "PrioritySortTask", "SeqDigitsTask"]


# ---------------------------------------------------------------- copy


def test_copy_framing_and_target_is_the_data():
    batch = build_task(CopyConfig(width=5)).sample(3, gen())
    rows, _ = split(batch)
    length = batch.targets.shape[0]
    assert rows.shape == (length + 2, 3, 7)
    assert (rows[0, :, 5] == 1).all() and not rows[0, :, [0, 1, 2, 3, 4, 6]].any()  # start
    assert (rows[-1, :, 6] == 1).all() and not rows[-1, :, :6].any()  # end
    assert not rows[1:-1, :, 5:].any()  # data rows carry no markers
    assert torch.equal(rows[1:-1, :, :5], batch.targets)


def test_copy_lengths_are_inclusive_and_shared_within_a_batch():
    task, g = build_task(CopyConfig(min_len=2, max_len=5)), gen()
    lengths = {task.sample(2, g).targets.shape[0] for _ in range(N_DRAWS)}
    assert lengths == {2, 3, 4, 5}


# ---------------------------------------------------------------- repeat copy


def test_repeat_copy_tiles_the_data_and_ends_with_a_flag():
    cfg = RepeatCopyConfig(width=4)
    batch = build_task(cfg).sample(3, gen(1))
    rows, _ = split(batch)
    data, length = rows[1:-1, :, :4], rows.shape[0] - 2
    rep = (batch.targets.shape[0] - 1) // length
    assert batch.targets.shape == (length * rep + 1, 3, 5)
    assert torch.equal(batch.targets[:-1, :, :4], data.repeat(rep, 1, 1))
    assert not batch.targets[:-1, :, 4].any()
    assert (batch.targets[-1, :, 4] == 1).all() and not batch.targets[-1, :, :4].any()


def test_repeat_copy_end_row_carries_the_reference_normalised_repeat():
    # Reference quirk: mean 4.5 (not 5) and variance 8.25 for repeats 1..9.
    task, g = build_task(RepeatCopyConfig()), gen()
    for _ in range(20):
        batch = task.sample(2, g)
        rows, _ = split(batch)
        rep = (batch.targets.shape[0] - 1) // (rows.shape[0] - 2)
        expected = torch.full((2,), (rep - 4.5) / math.sqrt(8.25))
        assert torch.allclose(rows[-1, :, 9], expected)
        assert (rows[0, :, 8] == 1).all() and not rows[-1, :, :9].any()


def test_repeat_copy_lengths_and_repeats_reach_both_bounds():
    task, g = build_task(RepeatCopyConfig(min_len=2, max_len=4, min_repeat=1, max_repeat=3)), gen()
    lengths, repeats = set(), set()
    for _ in range(N_DRAWS):
        batch = task.sample(1, g)
        length = split(batch)[0].shape[0] - 2
        lengths.add(length)
        repeats.add((batch.targets.shape[0] - 1) // length)
    assert (lengths, repeats) == ({2, 3, 4}, {1, 2, 3})


# ---------------------------------------------------------------- associative recall


def parse_recall(rows: torch.Tensor, item_len: int, width: int):
    """Items (n, I, B, W) and the query (I, B, W) from the task rows."""
    n_items = (rows.shape[0] - 1) // (item_len + 1) - 1
    listed = rows[:n_items * (item_len + 1)].reshape(n_items, item_len + 1, *rows.shape[1:])
    return listed, rows[n_items * (item_len + 1):]


def test_associative_recall_layout():
    cfg = AssociativeRecallConfig(width=6, item_len=3)
    rows, _ = split(build_task(cfg).sample(2, gen()))
    listed, query = parse_recall(rows, 3, 6)
    assert rows.shape[0] == 4 * (listed.shape[0] + 1) + 1
    assert (listed[:, 0, :, 6] == 1).all() and not listed[:, 0, :, [0, 1, 2, 3, 4, 5, 7]].any()
    assert not listed[:, 1:, :, 6:].any()
    assert query.shape[0] == 5
    assert (query[[0, -1], :, 7] == 1).all() and not query[[0, -1], :, :7].any()
    assert not query[1:-1, :, 6:].any()


def test_associative_recall_target_is_the_item_after_the_query_and_last_never_asked():
    cfg = AssociativeRecallConfig(min_items=4, max_items=4)
    task, g, asked = build_task(cfg), gen(), set()
    for _ in range(50):
        batch = task.sample(8, g)
        listed, query = parse_recall(split(batch)[0], 3, 6)
        items = listed[:, 1:, :, :6]  # (n, I, B, W)
        for b in range(8):
            matches = [i for i in range(4) if torch.equal(items[i, :, b], query[1:-1, b, :6])]
            assert len(matches) == 1
            q = matches[0]
            assert q < 3  # reference quirk: the last item is never queried
            assert torch.equal(batch.targets[:, b], items[q + 1, :, b])
            asked.add(q)
    assert asked == {0, 1, 2}


def test_associative_recall_item_counts_reach_both_bounds():
    task, g = build_task(AssociativeRecallConfig(min_items=2, max_items=4)), gen()
    counts = {(split(task.sample(1, g))[0].shape[0] - 1) // 4 - 1 for _ in range(N_DRAWS)}
    assert counts == {2, 3, 4}


# ---------------------------------------------------------------- priority sort


def test_priority_sort_target_is_rows_by_priority_descending():
    batch = build_task(PrioritySortConfig(width=5, n_inputs=12, n_outputs=7)).sample(3, gen())
    rows, _ = split(batch)
    assert rows.shape == (12, 3, 6)
    priority = rows[:, :, 5]
    assert ((priority >= -1) & (priority < 1)).all() and (priority < 0).any()
    for b in range(3):
        order = sorted(range(12), key=lambda i: -float(priority[i, b]))[:7]
        assert torch.equal(batch.targets[:, b], rows[order, b, :5])


def test_priority_sort_legacy_sorts_each_column_and_differs_from_row_sort():
    cfg = PrioritySortConfig(width=5, n_inputs=12, n_outputs=7)
    legacy = build_task(PrioritySortConfig(width=5, n_inputs=12, n_outputs=7, legacy_column_sort=True))
    fixed_batch, legacy_batch = build_task(cfg).sample(3, gen()), legacy.sample(3, gen())
    assert torch.equal(fixed_batch.inputs, legacy_batch.inputs)  # same draws, only the target differs
    rows, _ = split(legacy_batch)
    ones = rows[:, :, :5].sum(dim=0)  # (B, W)
    expected = (torch.arange(7)[:, None, None] < ones).float()  # each column: all its ones first
    assert torch.equal(legacy_batch.targets, expected)
    assert not torch.equal(legacy_batch.targets, fixed_batch.targets)


# ---------------------------------------------------------------- loss and bits error


def test_bits_error_counts_wrong_bits_per_sequence_on_the_answer_phase():
    task = build_task(CopyConfig(width=3))
    targets = torch.tensor([[[1.0, 0, 0], [1, 1, 1]], [[1, 1, 0], [1, 1, 1]]])  # (2, B=2, 3)
    batch = Batch(torch.zeros(6, 2, 5), targets)
    logits = torch.full((6, 2, 3), 5.0)  # predicts all ones
    logits[:4] = -5.0  # the input phase must be ignored
    metrics = task.metrics(logits, batch)
    assert metrics["bits_error"] == pytest.approx((3 + 0) / 2)  # zeros in each sequence's target


def test_loss_is_mean_bce_of_sigmoid_on_the_answer_phase():
    task = build_task(CopyConfig(width=3))
    batch = task.sample(4, gen())
    logits = torch.randn(batch.inputs.shape[0], 4, 3, generator=gen(1))
    t_out = batch.targets.shape[0]
    p = torch.sigmoid(logits[-t_out:].double())
    y = batch.targets.double()
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert float(task.loss(logits, batch)) == pytest.approx(float(expected), rel=1e-5)
    assert task.metrics(logits, batch)["loss"] == pytest.approx(float(expected), rel=1e-5)


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(("cls", "data", "key"), [
    (CopyConfig, {"min_len": 5, "max_len": 2}, "max_len"),
    (CopyConfig, {"min_len": 0}, "min_len"),
    (CopyConfig, {"width": 0}, "width"),
    (RepeatCopyConfig, {"min_repeat": 0}, "min_repeat"),
    (RepeatCopyConfig, {"min_repeat": 4, "max_repeat": 3}, "max_repeat"),
    (AssociativeRecallConfig, {"min_items": 1}, "min_items"),
    (AssociativeRecallConfig, {"item_len": 0}, "item_len"),
    (PrioritySortConfig, {"n_inputs": 10, "n_outputs": 11}, "n_outputs"),
])
def test_invalid_config_names_the_key_and_value(cls, data, key):
    with pytest.raises(ConfigError, match=rf"^spec\.{key}: .*{data[key]}"):
        from_mapping(cls, data, "spec")
