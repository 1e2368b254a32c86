"""Character-level language modelling (§7.3) with truncated BPTT: next-symbol prediction, scored in bits per character.

The authors never released this task (§7.3), so the set-up is the field's standard one:
- Data: one raw file split by position (enwik8: the first 90M / 5M / 5M bytes are train /
  validation / test), or three files (Penn Treebank's `ptb.char.{train,valid,test}.txt`). Symbols
  are bytes; the vocabulary is every byte seen in the training split plus an unknown id (0).
  Without a data folder: the 6.1 MB English Wikipedia XML dump excerpt that ships in gensim's
  test data (enwik8's format, split 90/5/5 %), labelled `data_source = "gensim-enwiki-sample-6MB"`.
- Training (standard LM batching): the training text is cut into `batch_size` contiguous streams;
  each step reads the next `bptt` symbols of every stream, one-hot (input size = vocabulary), and
  the target at every step is the next symbol (mean cross-entropy over all steps). The model's
  state and memory are carried from one segment to the next, detached (the reference's
  `_reload_mem`, §4.4, §10 item 8; `carries_state`). When the streams run out a new pass begins
  with a fresh state, its streams rotated by an offset drawn from the run's data generator.
- Evaluation: the validation (or test) split, or its first `eval_limit` symbols, as
  `eval_batch_size` contiguous streams read in `bptt` segments with carried state from a fresh
  start; bpc = mean cross-entropy in nats / ln 2 over every scored symbol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from armin.config import require
from armin.errors import ConfigError
from armin.tasks.base import Batch, Task
from armin.tasks.datafiles import DataError, cached, package_file, read_bytes

UNKNOWN = 0  # the id of every symbol not seen in the training split
N_BYTES = 256
ENWIK8_SIZE = 100_000_000  # bytes; files at least this long get the enwik8 split
ENWIK8_SPLIT = (90_000_000, 5_000_000, 5_000_000)  # bytes: train, validation, test from the file's start
HELD_OUT_SHARE = 0.05  # smaller single files: 5 % validation, 5 % test, the rest (90 %) training
LAYOUTS = (  # file names looked for in data_dir when `files` is empty, in this order
    ("enwik8",),
    ("text8",),
    ("ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt"),
    ("train.txt", "valid.txt", "test.txt"),
)
SPACED_PREFIX = "ptb.char."  # symbols = "auto" reads files named like this as space-separated symbols
SEPARATORS = b" \r\n"  # bytes that separate symbols in spaced files (spaces and \r are dropped, \n is kept)
SAMPLE_FILE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"  # in gensim
SAMPLE_SOURCE = "gensim-enwiki-sample-6MB"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class CharLMConfig:
    """Next-character prediction on a byte stream, trained with truncated BPTT (§7.3)."""

    name: Literal["char_lm"] = "char_lm"
    data_dir: str | None = None  # folder with the text files; None: the 6 MB Wikipedia XML sample shipped with gensim
    files: tuple[str, ...] = ()  # one file split by split_bytes (enwik8), or three: train, valid, test; (): look for enwik8, text8, ptb.char.{train,valid,test}.txt, {train,valid,test}.txt
    split_bytes: tuple[int, ...] | None = None  # one file: (train, valid, test) byte counts from its start; None: 90M/5M/5M for files of >= 100M bytes (enwik8), else 90%/5%/5%
    symbols: Literal["auto", "bytes", "spaced"] = "auto"  # bytes: every byte is a symbol (enwik8); spaced: symbols between spaces, newline ends a line (Mikolov's ptb.char files); auto: spaced for ptb.char.* files
    bptt: int = 100  # truncated-BPTT segment length: symbols per stream per training step (and per evaluation segment)
    eval_split: Literal["validation", "test"] = "validation"  # which held-out split is evaluated
    eval_limit: int | None = None  # score only the first eval_limit symbols of that split (None: all of it)

    def __post_init__(self) -> None:
        require(len(self.files) in (0, 1, 3), "files", f"give one file or three (train, valid, test), got {list(self.files)}")
        require(not self.files or self.data_dir is not None, "files", "needs data_dir (the folder holding them)")
        if self.split_bytes is not None:
            require(len(self.files) != 3, "split_bytes", "only applies to a single file; three files are split already")
            require(len(self.split_bytes) == 3 and all(n >= 2 for n in self.split_bytes), "split_bytes",
                    f"expected (train, valid, test) byte counts, each >= 2, got {list(self.split_bytes)}")
        require(self.bptt >= 1, "bptt", f"must be >= 1, got {self.bptt}")
        require(self.eval_limit is None or self.eval_limit >= 1, "eval_limit", f"must be >= 1, got {self.eval_limit}")


# ---------------------------------------------------------------- reading and encoding the text


def find_files(cfg: CharLMConfig) -> list[Path]:
    """The source files: the shipped sample, the configured names, or the first known layout present."""
    if cfg.data_dir is None:
        return [package_file("gensim", SAMPLE_FILE)]
    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (data_dir must name the folder holding the text files)")
    if cfg.files:
        paths = [root / name for name in cfg.files]
        for path in paths:
            if not path.is_file():
                raise DataError(f"{path}: not found (task option files = {list(cfg.files)})")
        return paths
    for layout in LAYOUTS:
        if all((root / name).is_file() for name in layout):
            return [root / name for name in layout]
    known = "; ".join(" + ".join(layout) for layout in LAYOUTS)
    raise DataError(f"{root}: no text files found (looked for: {known}); name yours with the task option files")


def split_sizes(path: Path, size: int, split_bytes: tuple[int, ...] | None) -> tuple[int, int, int]:
    """(train, valid, test) byte counts for one file of `size` bytes."""
    if split_bytes is None:
        if size >= ENWIK8_SIZE:
            return ENWIK8_SPLIT
        held_out = int(size * HELD_OUT_SHARE)
        return size - 2 * held_out, held_out, held_out
    train, valid, test = split_bytes
    if train + valid + test > size:
        raise DataError(f"{path}: has {size} symbols, fewer than split_bytes {list(split_bytes)} needs "
                        f"({train + valid + test})")
    return train, valid, test


def unspace(text: bytes, path: Path) -> bytes:
    """Spaced symbols ('a e r _ b a n k\\n') as one symbol per byte ('aer_bank\\n')."""
    data = np.frombuffer(text, dtype=np.uint8)
    symbol = ~np.isin(data, np.frombuffer(SEPARATORS, dtype=np.uint8))  # (N,)
    joined = np.flatnonzero(symbol[:-1] & symbol[1:])
    if len(joined):
        i = int(joined[0])
        raise DataError(f"{path}: not space-separated symbols: {text[i:i + 2]!r} at byte {i} (set the task option "
                        f"symbols = 'bytes' to model every byte)")
    return text.replace(b" ", b"").replace(b"\r", b"")


def encode(paths: list[Path], split_bytes: tuple[int, ...] | None, spaced: bool) -> dict[str, np.ndarray]:
    """{"train", "valid", "test": (n,) int16 ids; "vocab": (V-1,) uint8 byte value of ids 1..V-1}."""
    texts = [read_bytes(p) for p in paths]
    if spaced:
        texts = [unspace(t, p) for t, p in zip(texts, paths)]
    if len(texts) == 1:
        train, valid, test = split_sizes(paths[0], len(texts[0]), split_bytes)
        text = texts[0]
        texts = [text[:train], text[train:train + valid], text[train + valid:train + valid + test]]
    parts = [np.frombuffer(t, dtype=np.uint8) for t in texts]
    for name, part, path in zip(SPLITS, parts, paths * 3 if len(paths) == 1 else paths):
        if len(part) < 2:
            raise DataError(f"{path}: the {name} split has {len(part)} symbols; at least 2 are needed")
    seen = np.flatnonzero(np.bincount(parts[0], minlength=N_BYTES))  # byte values in the training split
    table = np.full(N_BYTES, UNKNOWN, dtype=np.int16)  # byte -> id
    table[seen] = np.arange(1, len(seen) + 1)
    return {name: table[part] for name, part in zip(SPLITS, parts)} | {"vocab": seen.astype(np.uint8)}


def load_text(cfg: CharLMConfig) -> tuple[dict[str, np.ndarray], str]:
    """The encoded splits and vocabulary (cached after the first read), and where they came from."""
    paths = find_files(cfg)
    spaced = cfg.symbols == "spaced" or (cfg.symbols == "auto" and all(p.name.startswith(SPACED_PREFIX) for p in paths))
    if len(paths) == 3 and cfg.split_bytes is not None:
        raise ConfigError(f"split_bytes: only applies to a single file; {paths[0].parent} holds three "
                          f"({', '.join(p.name for p in paths)})")
    options = {"split_bytes": cfg.split_bytes, "spaced": spaced}
    arrays = cached("char-lm", paths, options, lambda: encode(paths, cfg.split_bytes, spaced))
    if cfg.data_dir is None:
        return arrays, SAMPLE_SOURCE
    if len(paths) == 1:
        return arrays, f"file:{paths[0].resolve()}"
    return arrays, f"files:{paths[0].parent.resolve()}/{{{','.join(p.name for p in paths)}}}"


# ---------------------------------------------------------------- the task


def one_hot(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    return F.one_hot(ids, vocab_size).to(torch.float32)  # (T, B) -> (T, B, V)


class EvalSegments(Sequence[Batch]):
    """A text as `n_streams` contiguous streams read in consecutive `bptt` segments, built on access.

    Stream b scores symbols b*L+1 .. b*L+L of the text (L = (n-1) // n_streams, so fewer than
    n_streams symbols at the end go unscored); the last segment may be shorter than `bptt`. Built
    lazily because a whole split as one-hot inputs would not fit in memory (enwik8: 5M x V floats).
    """

    def __init__(self, ids: torch.Tensor, n_streams: int, bptt: int, vocab_size: int):
        self.ids, self.bptt, self.vocab_size = ids, bptt, vocab_size
        self.n_streams = min(n_streams, len(ids) - 1)
        self.length = (len(ids) - 1) // self.n_streams  # L: symbols scored per stream

    def __len__(self) -> int:
        return math.ceil(self.length / self.bptt)

    def __getitem__(self, k: int) -> Batch:
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        k %= len(self)
        start, stop = k * self.bptt, min((k + 1) * self.bptt, self.length)
        pos = torch.arange(self.n_streams) * self.length + torch.arange(start, stop + 1).unsqueeze(1)  # (T+1, B)
        ids = self.ids[pos].long()
        return Batch(one_hot(ids[:-1], self.vocab_size), ids[1:], reset=k == 0)


class CharLMTask(Task):
    """Inputs (bptt, B, V) one-hot; targets (bptt, B) next-symbol ids, scored at every step."""

    metric = "bpc"
    higher_is_better = False
    carries_state = True

    def __init__(self, cfg: CharLMConfig) -> None:
        self.cfg = cfg
        arrays, self.data_source = load_text(cfg)
        self.vocab = bytes(arrays["vocab"])  # the byte value of ids 1..V-1 (id 0: unknown)
        self.input_size = self.output_size = len(self.vocab) + 1
        self.train_ids = torch.from_numpy(arrays["train"])  # (n,) int16
        split = arrays["valid" if cfg.eval_split == "validation" else "test"]
        self.eval_ids = torch.from_numpy(split[:None if cfg.eval_limit is None else cfg.eval_limit + 1])
        self.starts: torch.Tensor | None = None  # (B,) where each training stream began in this pass
        self.segment = 0  # segments read in this pass

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """The next `bptt` symbols of every training stream; a new pass (reset=True) when they run out.

        Stream b of a pass reads the text from (offset + b * n // B) on, wrapping around at the end;
        `offset` is drawn from `generator` at the start of every pass (the only randomness).
        """
        n, T = len(self.train_ids), self.cfg.bptt
        stride = n // batch_size  # symbols per stream
        if stride < T + 1:
            raise ConfigError(f"bptt: the training split has {n} symbols, too few for batch_size {batch_size} "
                              f"streams of bptt + 1 = {T + 1}; lower batch_size or bptt")
        reset = self.starts is None or len(self.starts) != batch_size or self.segment >= (stride - 1) // T
        if reset:
            offset = torch.randint(0, n, (1,), generator=generator)
            self.starts, self.segment = offset + torch.arange(batch_size) * stride, 0  # (B,)
        pos = (self.starts + self.segment * T + torch.arange(T + 1).unsqueeze(1)) % n  # (T+1, B)
        self.segment += 1
        ids = self.train_ids[pos].long()  # (T+1, B)
        return Batch(one_hot(ids[:-1], self.input_size), ids[1:], reset=reset)

    def eval_set(self, n_sequences: int, batch_size: int, generator: torch.Generator) -> EvalSegments:
        """The evaluation split as `batch_size` streams in segments; `n_sequences` and `generator` are unused."""
        return EvalSegments(self.eval_ids, batch_size, self.cfg.bptt, self.input_size)

    def eval_weight(self, batch: Batch) -> int:
        return batch.targets.numel()  # every scored symbol counts once, whatever the segment's length

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1))  # (T*B, V) vs (T*B,)

    def metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        nats = float(self.loss(logits, batch))
        return {"loss": nats, "bpc": nats / math.log(2)}
