"""The cost profile: paired rounds, per-arm facts, and its round trip through the database."""

import hashlib
import shutil
from pathlib import Path

import pytest

from armin.costs.profile import profile_arms
from armin.costs.settings import Settings
from armin.costs.store import save_profile
from armin.model import ModelConfig
from armin.reporting.query import QueryError, cost_profile
from armin.storage import Database, StorageError, Study
from armin.tasks import CopyConfig, build_task
from armin.training import OptimizerConfig, RunConfig, TrainConfig

TINY = Settings(rounds=3, warmup_rounds=1, steps_per_round=3, threads=1)
OLD_FILE = Path(__file__).parents[1] / "storage" / "assets" / "schema_v1.db"  # written by the schema-1 code


def run(**model) -> RunConfig:
    return RunConfig(task=CopyConfig(max_len=4), model=ModelConfig(hidden_size=8, n_slots=4, r_size=4, **model),
                     optimizer=OptimizerConfig(lr=1e-3), train=TrainConfig(steps=10, batch_size=4), seed=3)


@pytest.fixture(scope="module")
def profile():
    return profile_arms({"base": run(), "twin": run(), "plain": run(arch="lstm")}, TINY)


def test_every_arm_has_one_positive_sample_per_round_on_the_same_batches(profile):
    samples = profile.samples()
    assert samples.groupby("arm").size().to_dict() == {"base": 3, "twin": 3, "plain": 3}
    assert (samples[["train_step_s", "infer_s", "elements"]] > 0).all().all()
    wide = samples.pivot(index="round", columns="arm", values="elements")
    assert (wide["base"] == wide["twin"]).all() and (wide["base"] == wide["plain"]).all()  # paired: same data
    assert profile.threads == 1 and profile.clock == "cpu time" and profile.steps_per_round == 3


def test_static_facts_are_the_configurations(profile):
    by = {a.arm: a for a in profile.arms}
    task = build_task(CopyConfig(max_len=4))
    X, Y, H = task.input_size, task.output_size, 8
    assert by["plain"].n_params == 4 * H * (X + H) + 4 * H + H * Y + Y
    # one configuration, one model: the same parameters, FLOPs and step memory under two names
    assert (by["base"].n_params, by["base"].flops_per_step, by["base"].peak_step_bytes) == \
        (by["twin"].n_params, by["twin"].flops_per_step, by["twin"].peak_step_bytes)
    assert by["base"].flops_per_step > by["plain"].flops_per_step > 0  # ARMIN's memory adds matmuls
    assert by["base"].peak_step_bytes > 0 and by["plain"].peak_step_bytes > 0


def test_profile_round_trips_through_the_database_and_a_new_one_replaces_it(profile, tmp_path):
    db = Database.open(tmp_path / "p.db")
    with db.session() as s:
        s.add(Study(name="s", kind="ablation", goal="g", spec_text="", spec_json="{}", spec_hash="h",
                    optuna_study_name="s"))
    with db.session() as s:
        study_id = s.query(Study.id).scalar()
    save_profile(db, study_id, profile)
    save_profile(db, study_id, profile)  # replaces: no duplicate rows, no unique-constraint error
    db.close()
    back = cost_profile(tmp_path / "p.db", "s")
    assert len(back) == 9
    mine = profile.samples()
    merged = back.merge(mine, on=["arm", "round"], suffixes=("", "_mine"))
    for col in ("train_step_s", "infer_s", "elements"):
        assert merged[col].tolist() == pytest.approx(merged[f"{col}_mine"].tolist(), rel=0, abs=0)
    by = {a.arm: a for a in profile.arms}
    for row in back.drop_duplicates("arm").itertuples():
        assert (row.n_params, row.flops_per_step, row.peak_step_bytes) == \
            (by[row.arm].n_params, by[row.arm].flops_per_step, by[row.arm].peak_step_bytes)
        assert row.threads == 1 and row.clock == "cpu time" and row.steps_per_round == 3


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_schema_1_file_is_refused_in_one_line_saying_what_to_do_and_left_untouched(tmp_path):
    old = tmp_path / "old.db"
    shutil.copy(OLD_FILE, old)
    before = _digest(old)
    for readonly in (False, True):
        with pytest.raises(StorageError) as info:
            Database.open(old, readonly=readonly)
        message = str(info.value)
        assert "older armin (schema version 1" in message and "new --db file" in message and "\n" not in message
    with pytest.raises(QueryError, match="older armin"):
        cost_profile(old, "old-study")
    assert _digest(old) == before  # not migrated, not touched


def test_the_drivers_profile_rounds_come_from_the_environment_and_a_bad_value_is_one_line(tmp_path, monkeypatch):
    import subprocess
    import sys

    from armin.costs.settings import ROUNDS, ROUNDS_ENV, driver_rounds

    monkeypatch.delenv(ROUNDS_ENV)
    assert driver_rounds() == ROUNDS
    monkeypatch.setenv(ROUNDS_ENV, "0")
    assert driver_rounds() == 0
    monkeypatch.setenv(ROUNDS_ENV, "many")
    spec = Path(__file__).parents[2] / "ablations" / "copy_quick.toml"
    p = subprocess.run([sys.executable, "-m", "armin.cli.main", "ablation", "run", str(spec), "--db",
                        str(tmp_path / "a.db"), "--quiet"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and ROUNDS_ENV in p.stderr, p.stderr
    if (tmp_path / "a.db").exists():  # refused before the lease: no study row, no trial
        import sqlite3

        con = sqlite3.connect(tmp_path / "a.db")
        assert con.execute("SELECT COUNT(*) FROM armin_studies").fetchone() == (0,)
        con.close()
