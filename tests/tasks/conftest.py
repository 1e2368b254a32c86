"""Data caches go to a temporary folder, never to ~/.cache/armin (tests that test the cache use their own)."""

import pytest


@pytest.fixture(autouse=True)
def armin_cache_dir(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.getbasetemp() / "armin-cache"
    monkeypatch.setenv("ARMIN_CACHE_DIR", str(path))
    return path
