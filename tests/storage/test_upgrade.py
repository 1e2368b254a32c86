"""`armin db upgrade` on a real file written by the schema-1 code.

The asset `assets/schema_v1_ablation.db` is a real ablation (`assets/schema_v1_ablation.toml`, 2 arms
x 2 seeds, real Ray) run by armin at commit 52b1cf4, the last schema-1 code. The upgrade must keep
every row, add what schema 2 has, keep a backup, and let the study be resumed and reported.
"""

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from armin.storage import SCHEMA_VERSION, Database, StorageError, Study
from armin.storage.upgrade import upgrade

ASSETS = Path(__file__).parent / "assets"
ARMIN = [sys.executable, "-m", "armin.cli.main"]


def dump(path: Path, table: str) -> list[dict]:
    """Every row of `table` as {column: value} (a rebuilt table may order its columns differently)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in con.execute(f"SELECT * FROM {table} ORDER BY 1")]
    finally:
        con.close()


def kept(before: list[dict], after: list[dict]) -> bool:
    """Every old row is still there with every old column's value."""
    return len(before) == len(after) and all(a | b == a for b, a in zip(before, after))


@pytest.fixture
def old(tmp_path) -> Path:
    path = tmp_path / "old.db"
    shutil.copy(ASSETS / "schema_v1_ablation.db", path)
    return path


def test_an_old_file_is_refused_with_the_upgrade_command_and_left_untouched(old):
    before = old.read_bytes()
    with pytest.raises(StorageError) as info:
        Database.open(old)
    message = str(info.value)
    assert "schema version 1" in message and "armin db upgrade --db" in message and "\n" not in message, message
    assert old.read_bytes() == before


def test_upgrade_keeps_every_row_adds_the_new_schema_and_keeps_a_backup(old):
    trials_before, metrics_before = dump(old, "armin_trials"), dump(old, "armin_metrics")
    costs_before = dump(old, "armin_costs")
    done = upgrade(old)
    assert (done.from_version, done.to_version) == (1, SCHEMA_VERSION)
    assert {"armin_spec_versions", "armin_cost_profiles", "armin_cost_samples"} <= set(done.tables)
    assert {"armin_trials.spec_version", "armin_costs.warmup_s", "armin_costs.peak_memory_bytes (now nullable)"} \
        <= set(done.columns), done.columns
    # the copy is the old database, row for row, still schema 1
    assert dump(done.backup, "armin_trials") == trials_before and dump(done.backup, "armin_metrics") == metrics_before
    assert dump(done.backup, "armin_meta") == [{"key": "schema_version", "value": "1"}]
    trials_after = dump(old, "armin_trials")
    assert kept(trials_before, trials_after) and {t["spec_version"] for t in trials_after} == {1}
    assert dump(old, "armin_metrics") == metrics_before
    costs_after = dump(old, "armin_costs")
    assert kept(costs_before, costs_after) and len(costs_before) == 4
    assert all(c["warmup_s"] is None and c["cpu_time_per_step_s"] is None for c in costs_after)  # not measured then
    # the rebuilt tables keep their constraints: a trial row of an unknown state is still refused
    with pytest.raises(sqlite3.IntegrityError):
        con = sqlite3.connect(old)
        con.execute("UPDATE armin_trials SET state = 'BOGUS'")
    with Database.open(old, readonly=True) as db, db.session() as s:  # now this armin's schema
        study = Study.find_or_raise_by_name(s, "old-ablation")
        assert [t.spec_version for t in study.trials] == [1, 1, 1, 1] and study.spec_versions == []
    assert upgrade(old).backup is None  # a second upgrade has nothing to do


def test_an_upgraded_study_grows_as_a_forced_version_2_and_reports(ray_cluster, old, tmp_path):
    upgrade(old)
    grown = (ASSETS / "schema_v1_ablation.toml").read_text().replace("seeds = [11, 12]", "seeds = [11, 12, 13]")
    spec = tmp_path / "grown.toml"
    spec.write_text(grown)
    run = [*ARMIN, "ablation", "run", str(spec), "--db", str(old), "--address", ray_cluster, "--quiet"]
    # this armin's model has a field the old one had not (address_state): the contract differs, and says how
    p = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "model.address_state: (none) -> 'c'" in p.stderr, p.stderr
    p = subprocess.run([*run, "--force"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    with Database.open(old, readonly=True) as db, db.session() as s:
        study = Study.find_or_raise_by_name(s, "old-ablation")
        assert [(v.version, v.forced) for v in study.spec_versions] == [(1, False), (2, True)]
        assert "model.address_state: (none) -> 'c'" in study.spec_versions[1].changes
        assert sorted((t.seed, t.spec_version) for t in study.trials) == \
            [(11, 1), (11, 1), (12, 1), (12, 1), (13, 2), (13, 2)]  # the old runs kept, only the new seed run
    out = tmp_path / "report"
    p = subprocess.run([*ARMIN, "report", "old-ablation", "--db", str(old), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "## Spec history" in (out / "report.md").read_text()


def test_the_cli_says_what_it_did_and_refuses_non_armin_files_in_one_line(old, tmp_path):
    p = subprocess.run([*ARMIN, "db", "upgrade", "--db", str(old)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "schema version 1 -> " in p.stdout and ".schema-1.bak" in p.stdout, p.stdout
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    before = other.read_bytes()
    p = subprocess.run([*ARMIN, "db", "upgrade", "--db", str(other)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "not an armin database" in p.stderr
    assert other.read_bytes() == before
