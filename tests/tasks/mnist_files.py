"""Small MNIST IDX files written by the tests themselves (a few dozen images), gz or plain."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from armin.tasks.mnist import FILES, IMAGES_MAGIC, LABELS_MAGIC

N_TRAIN, N_TEST = 40, 12


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file: magic, one big-endian uint32 per dimension, then the unsigned bytes."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) images whose first pixel is the image's index (so rows can be traced) and labels 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    return images, (np.arange(n) % 10).astype(np.uint8)


def write_mnist(root: Path, *, gz: dict[str, bool] | None = None) -> dict[str, np.ndarray]:
    """The four files under `root` (train images gzipped, the rest plain unless `gz` says otherwise)."""
    gz = {"train_images": True} | (gz or {})
    train_images, train_labels = digits(N_TRAIN, 0)
    test_images, test_labels = digits(N_TEST, 1)
    arrays = {"train_images": train_images, "train_labels": train_labels,
              "test_images": test_images, "test_labels": test_labels}
    for role, array in arrays.items():
        magic = IMAGES_MAGIC if role.endswith("images") else LABELS_MAGIC
        write(root / (FILES[role] + (".gz" if gz.get(role) else "")), idx_bytes(array, magic))
    return arrays
