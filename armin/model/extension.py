"""The C++ loop of the fused path (`fused.cpp`): compiled on first use, cached, optional.

`load()` builds the extension once per machine with `torch.utils.cpp_extension.load` (a C++
compiler with OpenMP, and ninja from PATH or the `ninja` package; about 40 s) and caches it under
$TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions), where later processes find it in well
under a second until fused.cpp or the flags change. It returns the module, or None when it cannot be
built (no compiler, no ninja, a failed build, or ARMIN_FUSED_CPP=0): the fused path then runs its
Python loop instead, with one logged warning saying why. `status()` tells which happened.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from pathlib import Path
from types import ModuleType

from armin.model.kernel_types import Saved, Spec

SOURCE = Path(__file__).with_name("fused.cpp")
NAME = "armin_fused_v7"  # bump when the Python <-> C++ signature changes
DISABLE_ENV = "ARMIN_FUSED_CPP"  # "0": never build or use the extension

log = logging.getLogger(__name__)
_module: ModuleType | None = None
_status = "not loaded yet"


def load() -> ModuleType | None:
    """The compiled module (built at the first call in a process), or None if unavailable."""
    global _module, _status
    if _module is not None or _status != "not loaded yet":
        return _module
    if os.environ.get(DISABLE_ENV) == "0":
        _status = f"disabled by {DISABLE_ENV}=0"
        return None
    try:
        from torch.utils import cpp_extension

        _find_ninja()
        _clear_stale_lock(Path(cpp_extension._get_build_directory(NAME, False)) / "lock")
        _module = cpp_extension.load(name=NAME, sources=[str(SOURCE)], extra_cflags=compile_flags(),
                                     extra_ldflags=["-fopenmp"], verbose=False)
        _status = "built" + ("" if _module.have_simd() else ", scalar exp/tanh") + (
            "" if _module.have_blas() else ", matmuls through ATen (no BLAS symbol)")
    except Exception as e:  # noqa: BLE001 - any build failure means: use the Python loop
        _status = f"unavailable ({type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''})"
        log.warning("armin: fused C++ loop %s; using the Python loop", _status)
    return _module


def copy_build(root: str | Path) -> Path:
    """Copy this process's build (timestamps kept, no lock) into the extensions root `root`, and return
    the directory a process with TORCH_EXTENSIONS_DIR=root loads from: the same sources at the same
    path are up to date there, so it loads in a second instead of a ~40 s rebuild (chaos kills get a
    private root of their own this way)."""
    import shutil

    from torch.utils import cpp_extension

    built = Path(cpp_extension._get_build_directory(NAME, False))
    target = Path(root) / NAME  # torch's layout under an explicit $TORCH_EXTENSIONS_DIR
    shutil.copytree(built, target, ignore=shutil.ignore_patterns("lock"), dirs_exist_ok=True)
    return target


STALE_LOCK_S = 300  # no build takes this long (about 40 s on 2 cores); an older lock's holder is gone


def _clear_stale_lock(lock: Path) -> None:
    """Remove torch's build lock if it is older than any build takes.

    torch's loader takes `lock` in the build directory on every load and waits for ever while it
    exists; a worker killed while holding it (a chaos kill, an OOM kill) left every later trial on
    the machine hanging. A lock this old has no live build behind it.
    """
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_S:
        log.warning("armin: removing a stale build lock %s (%.0f s old: its holder died)", lock, age)
        lock.unlink(missing_ok=True)


def _find_ninja() -> None:
    """cpp_extension runs `ninja` from PATH: add the pip package's binary when PATH has none (a venv
    used without activating it)."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def compile_flags() -> list[str]:
    """-O3 and OpenMP (at::parallel_for is inline: without -fopenmp it runs serially), plus AVX2/FMA
    vectorised exp/tanh when this CPU has them (x86-64 Linux)."""
    flags = ["-O3", "-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64") and {"avx2", "fma"} <= _cpu_flags():
        flags += ["-mavx2", "-mfma", "-DARMIN_AVX2"]
    return flags


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def status() -> str:
    """'built', 'disabled by ...', 'unavailable (why)' or 'not loaded yet'."""
    return _status


def _spec_args(s: Spec) -> tuple:
    return (s.H, s.N, s.W, s.K1, s.K2, s.reference, s.armin_cell, s.soft, s.address_h, s.n_written,
            s.temperature, s.forget_bias, s.tardis_cell, s.U, s.address_c)


class CppKernels:
    """fused.cpp behind the same interface as `fused.PythonKernels` (CPU, float32 / float64)."""

    name = "cpp"

    @staticmethod
    def forward(s: Spec, x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0, memory0, prev0, usage0,
                save: bool):
        res = _module.forward(x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0, memory0, prev0, usage0,
                              *_spec_args(s), save)
        out, h, c, saved = res[0], res[1], res[2], Saved(*res[3:])
        return out, saved.y, h, c, saved

    @staticmethod
    def backward(s: Spec, sv: Saved, x, w_x, w_a, w1, w2, w_v, w_u, w_m, v, d_out, d_h, d_c, d_mem, d_prev, d_usage,
                 need_dx: bool):
        return tuple(_module.backward(list(sv), x, w_x, w_a, w1, w2, w_v, w_u, w_m, v, d_out, d_h, d_c, d_mem, d_prev,
                                      d_usage, need_dx, *_spec_args(s)))
