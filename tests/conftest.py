"""One real local Ray cluster (2 CPUs) per test process (`make test` runs two, pytest-xdist), shared by
every test in it that runs trials."""

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """Yields the cluster's address, so subprocess drivers can join it with --address."""
    import ray

    from armin.orchestration.cluster import silence_token_notice

    silence_token_notice()
    # "local": a fresh cluster, never one an earlier `ray start` recorded in /tmp/ray/ray_current_cluster
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # Trials and the test process share 2 cores: oversubscribed BLAS threads slow everything down.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(autouse=True)
def _short_cost_profiles(monkeypatch):
    # Every study ends with its cost profile (armin.costs.hook): the real path, on a tiny budget like the
    # trials' (3 rounds instead of 40). Tests of the profile's own figures call `profile_arms` directly.
    monkeypatch.setenv("ARMIN_PROFILE_ROUNDS", "3")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path):
    """A fresh database's --db value on each backend (tests/backends.py): a SQLite path, or a PostgreSQL URL
    (skipped, saying why, without ARMIN_TEST_POSTGRES_URL)."""
    from backends import NO_POSTGRES, database_target, postgres_url

    if request.param == "postgresql" and not postgres_url():
        pytest.skip(NO_POSTGRES)
    with database_target(request.param, tmp_path) as target:
        yield target
