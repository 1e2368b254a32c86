"""Build or load the C++ fused loop once, before any clock starts, and say so when it builds.

`armin.model.extension.load()` compiles `fused.cpp` on the first call on a machine (about 40 s) and
loads it from torch's extension cache afterwards (well under a second). Either must happen outside
timed regions: the trainer calls `prepare()` before its clock starts, and the study driver runs it
once on every node before the first trial (`armin.costs.hook`). When the cache has no build, one
line on stderr says it is building, and another how long it took.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from armin.model import extension

SLOW_LOAD_S = 2.0  # a load slower than this was a (re)build: say how long it took


def cached() -> bool:
    """Whether torch's extension cache holds a build of this extension (it may still be stale)."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    try:
        build_dir = Path(root) / extension.NAME if root else Path(cpp_extension._get_build_directory(extension.NAME, False))
    except Exception:  # noqa: BLE001 - a private torch helper: if it moved, assume a build is needed
        return False
    return (build_dir / f"{extension.NAME}.so").is_file()


def prepare(say: Callable[[str], None] | None = None) -> dict:
    """Load (building if need be) the extension in this process; {"status", "seconds", "built"}.

    `say` gets the human lines (default: stderr). Disabled or already loaded: nothing to do.
    """
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    if extension.status() != "not loaded yet" or os.environ.get(extension.DISABLE_ENV) == "0":
        extension.load()
        return {"status": extension.status(), "seconds": 0.0, "built": False}
    fresh = not cached()
    if fresh:
        say("armin: building the fused C++ loop (first use on this machine, about 40 s; cached afterwards)")
    start = time.perf_counter()
    extension.load()
    seconds = time.perf_counter() - start
    built = fresh or seconds > SLOW_LOAD_S
    if built:
        say(f"armin: fused C++ loop {extension.status()} in {seconds:.1f} s")
    return {"status": extension.status(), "seconds": seconds, "built": built}
