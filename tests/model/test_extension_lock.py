"""The C++ loop's build lock: a lock left by a killed worker must not hang every later trial.

torch's extension loader waits for ever while `lock` exists in the build directory; the chaos
benchmark found a worker SIGKILLed while holding it. `extension.load` removes a lock older than
any build takes, and leaves a young one (a live build) alone.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from armin.model import extension


def test_an_old_lock_is_removed_and_a_young_one_kept(tmp_path):
    old, young = tmp_path / "old-lock", tmp_path / "young-lock"
    old.touch()
    young.touch()
    then = time.time() - extension.STALE_LOCK_S - 60
    os.utime(old, (then, then))
    extension._clear_stale_lock(old)
    extension._clear_stale_lock(young)
    extension._clear_stale_lock(tmp_path / "missing")  # no lock: nothing to do
    assert not old.exists() and young.exists()


def test_a_stale_lock_left_in_the_build_directory_does_not_hang_the_next_load(tmp_path, monkeypatch):
    from torch.utils import cpp_extension

    if extension.load() is None:
        pytest.skip(f"the C++ loop is unavailable here: {extension.status()}")
    target = extension.copy_build(tmp_path / "ext")  # the same build, copied with its timestamps,
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    assert target == Path(cpp_extension._get_build_directory(extension.NAME, False))  # where the subprocess looks
    built_at = (target / f"{extension.NAME}.so").stat().st_mtime
    lock = target / "lock"
    lock.touch()
    then = time.time() - extension.STALE_LOCK_S - 60
    os.utime(lock, (then, then))
    code = "from armin.model import extension; extension.load(); print(extension.status())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0 and p.stdout.strip().startswith("built"), p.stderr
    assert not lock.exists()  # removed, not waited on (torch would wait for ever)
    assert (target / f"{extension.NAME}.so").stat().st_mtime == built_at  # loaded as copied, not rebuilt
