"""Sequential digits: pixel sequences, the fixed permutation, the fixed split and the metrics."""

import pytest
import torch

from armin.config import from_mapping
from armin.errors import ConfigError
from armin.tasks import Batch, SeqDigitsConfig, build_task
from armin.tasks.digits import load_digits

N_IMAGES = 1797  # sklearn's digits


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def eval_pixels(task) -> torch.Tensor:
    """The whole eval split as (64, N_eval)."""
    return torch.cat([b.inputs[:, :, 0] for b in task.eval_set(0, 100, gen())], dim=1)


def test_sample_is_64_steps_of_one_pixel_in_unit_range():
    task = build_task(SeqDigitsConfig())
    batch = task.sample(5, gen())
    assert batch.inputs.shape == (64, 5, 1) and batch.inputs.dtype == torch.float32
    assert batch.inputs.min() >= 0 and batch.inputs.max() <= 1 and batch.inputs.max() > 0.5
    assert batch.targets.shape == (5,) and batch.targets.dtype == torch.int64
    assert ((batch.targets >= 0) & (batch.targets < 10)).all()
    assert (task.input_size, task.output_size, task.metric, task.higher_is_better) == (1, 10, "accuracy", True)


def test_unpermuted_sequence_is_the_raster_scan_of_the_image():
    task = build_task(SeqDigitsConfig())
    images, labels = load_digits()
    first = int(task.eval_index[0])
    batch = task.eval_set(0, 4, gen())[0]
    assert torch.equal(batch.inputs[:, 0, 0], images[first])
    assert batch.targets[0] == labels[first]


def test_sampling_is_reproducible_from_the_generator():
    task = build_task(SeqDigitsConfig())
    a, b, c = (task.sample(8, gen(s)) for s in (1, 1, 2))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)


def test_permuted_is_one_fixed_permutation_of_the_same_images():
    plain, permuted = eval_pixels(build_task(SeqDigitsConfig())), eval_pixels(build_task(SeqDigitsConfig(permute=True)))
    assert not torch.equal(plain, permuted)
    # Same images: every image has the same multiset of pixel values.
    assert torch.equal(plain.sort(dim=0).values, permuted.sort(dim=0).values)
    # One permutation for all images: each permuted step is some raster step across the whole split.
    for step in permuted:
        assert (plain == step).all(dim=1).any()
    assert torch.equal(permuted, eval_pixels(build_task(SeqDigitsConfig(permute=True))))
    assert not torch.equal(permuted, eval_pixels(build_task(SeqDigitsConfig(permute=True, permutation_seed=1))))


def test_split_is_disjoint_complete_and_fixed_by_its_seed():
    task = build_task(SeqDigitsConfig(eval_fraction=0.2))
    eval_index, train_index = set(task.eval_index.tolist()), set(task.train_index.tolist())
    assert not eval_index & train_index
    assert len(eval_index | train_index) == N_IMAGES
    assert len(eval_index) == round(0.2 * N_IMAGES)
    assert torch.equal(task.eval_index, build_task(SeqDigitsConfig()).eval_index)
    assert not torch.equal(task.eval_index, build_task(SeqDigitsConfig(split_seed=1)).eval_index)


def test_eval_set_is_the_whole_split_in_order_and_ignores_the_generator():
    task = build_task(SeqDigitsConfig())
    batches = task.eval_set(5, 100, gen(0))
    assert [b.batch_size for b in batches] == [100, 100, 100, 59]
    assert torch.equal(torch.cat([b.targets for b in batches]), load_digits()[1][task.eval_index])
    other = task.eval_set(10_000, 100, gen(9))
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(batches, other))


def test_training_samples_come_only_from_the_train_split():
    task = build_task(SeqDigitsConfig())
    pixels = task.sample(200, gen()).inputs[:, :, 0].T  # (B, 64)
    train_images = load_digits()[0][task.train_index]
    assert (pixels[:, None] == train_images[None]).all(dim=2).any(dim=1).all()


def test_accuracy_and_loss_use_only_the_last_step():
    task = build_task(SeqDigitsConfig())
    targets = torch.tensor([3, 1, 4, 1])
    batch = Batch(torch.zeros(64, 4, 1), targets)
    logits = torch.zeros(64, 4, 10)
    logits[:-1, :, 0] = 9.0  # earlier steps all say 0: must be ignored
    logits[-1, [0, 1, 2, 3], [3, 1, 4, 7]] = 2.0  # three of four right
    metrics = task.metrics(logits, batch)
    assert metrics["accuracy"] == pytest.approx(0.75)
    expected = -torch.log_softmax(logits[-1].double(), dim=-1)[torch.arange(4), targets].mean()
    assert metrics["loss"] == pytest.approx(float(expected), rel=1e-6)
    assert float(task.loss(logits, batch)) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_eval_fraction_outside_unit_interval_is_rejected(fraction):
    with pytest.raises(ConfigError, match=r"^spec\.eval_fraction: "):
        from_mapping(SeqDigitsConfig, {"eval_fraction": fraction}, "spec")
