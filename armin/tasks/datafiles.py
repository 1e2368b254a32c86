"""Reading the users' data files once: a prepared-array cache, one-line errors, progress notes.

Real data sets (MNIST's IDX files, enwik8, Penn Treebank) are parsed on first use and the parsed
arrays are saved as one `.npz` in the cache directory (`$ARMIN_CACHE_DIR`, else `~/.cache/armin`),
keyed by every source file's absolute path, size and modification time plus the parsing options,
so a later run (or another trial on the same machine) loads them in milliseconds and a changed
file is parsed again. Nothing is ever downloaded: without a data folder a task uses a small real
sample that ships inside an installed package (`package_file`), and says so in `data_source`.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from armin.errors import DataError

CACHE_ENV = "ARMIN_CACHE_DIR"  # overrides the cache directory (tests point it at tmp_path)
DEFAULT_CACHE_DIR = Path("~/.cache/armin")
CACHE_FORMAT = 1  # bump when a prepared form changes: old cache files are then ignored
MB = 1_000_000  # bytes, for messages
NOTE_BYTES = 5 * MB  # sources at least this large announce their first (slow) parse
NOTE_SECONDS = 1.0  # a first parse that took at least this long says so when done


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def note(message: str) -> None:
    """A progress line for humans on stderr (shown above a live progress bar, kept in worker logs)."""
    print(f"armin: {message}", file=sys.stderr, flush=True)


def cache_key(kind: str, sources: list[Path], options: dict) -> str:
    """Identifies a prepared form: what it is, which exact files it came from, and how it was parsed."""
    stats = []
    for path in sources:
        st = path.stat()
        stats.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    text = json.dumps([CACHE_FORMAT, kind, stats, options], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def cached(kind: str, sources: list[Path], options: dict, prepare: Callable[[], dict[str, np.ndarray]]
           ) -> dict[str, np.ndarray]:
    """`prepare()`'s arrays, from the cache when these sources and options were prepared before.

    A cache that cannot be written (read-only home, full disk) only costs the parse next time.
    """
    path = cache_dir() / f"{kind}-{cache_key(kind, sources, options)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):  # damaged: prepare again
            pass
    size = sum(p.stat().st_size for p in sources)
    announced = size >= NOTE_BYTES
    if announced:
        note(f"preparing {kind} from {', '.join(map(str, sources))} ({size / MB:.1f} MB); done once, then cached")
    start = time.perf_counter()
    arrays = prepare()
    elapsed = time.perf_counter() - start
    try:
        save(path, arrays)
        where = f"cached as {path}"
    except OSError as e:
        where = f"not cached ({path.parent}: {e.strerror or e})"
    if announced or elapsed >= NOTE_SECONDS:
        note(f"prepared {kind} in {elapsed:.1f} s; {where}")
    return arrays


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically: concurrent trials never see half a file, a failed write leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False) as tmp:
        try:
            np.savez(tmp, **arrays)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


def read_bytes(path: Path) -> bytes:
    """A file's contents, decompressed when it ends in .gz or .bz2; a broken file is one DataError line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if path.suffix not in (".gz", ".bz2"):
        return raw
    try:
        return gzip.decompress(raw) if path.suffix == ".gz" else bz2.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: truncated: the compressed stream ends early ({len(raw)} bytes on disk)") from None
    except (OSError, ValueError, zlib.error) as e:  # gzip.BadGzipFile is an OSError; bz2 raises OSError
        kind = "gzip" if path.suffix == ".gz" else "bzip2"
        raise DataError(f"{path}: corrupt: not a valid {kind} file ({e})") from None


def package_file(package: str, relative: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the built-in sample needs the '{package}' package (pip install {package}), "
                        f"or give a data folder")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataError(f"{path}: not found; the installed '{package}' no longer ships the sample "
                        f"(give a data folder instead)")
    return path
