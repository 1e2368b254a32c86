"""Where a study or a run came from: git commit (with a dirty flag) and package versions.

A leaf module (standard library only): the driver records it per study, the trainer per run, so both
say the same thing about the same environment.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "optuna", "ray", "sqlalchemy", "numpy", "armin-lab")


def git_commit(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD's SHA, whether tracked files have uncommitted changes); (None, None) outside a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip(), bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
