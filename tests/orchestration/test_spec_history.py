"""The spec history and arm identity (issue 13, items 5, 7, 13 and 14).

- `--force` appends a spec version instead of overwriting the stored spec; each attempt names the
  version it ran under, and the report shows the history and warns when results mix contracts.
- A refused changed spec names the keys that changed, not two hashes.
- An arm is its model: adding a factor (which renames every arm) reuses the finished runs, and two
  arms with the same model are refused unless the spec asks for an A/A design.
"""

import json

import pytest
from spec_files import write
from test_ablation import spec

from armin.cli.main import main
from armin.config import changed_paths, summarize_changes
from armin.errors import ConfigError
from armin.orchestration.ablation_spec import load_ablation
from armin.orchestration.driver import Driver, StudyChanged
from armin.orchestration.plans import AblationPlan
from armin.reporting.data import load_study
from armin.reporting.render import build_report
from armin.reporting.status import study_summary
from armin.storage import Database, Study


def started(tmp_path, data) -> None:
    """A study row as a first run leaves it, checkpointed into the file (so its bytes can be compared)."""
    d = driver(tmp_path, data)
    d.open_study()
    d.db.close()


def driver(tmp_path, data, **kw) -> Driver:
    path = write(tmp_path, data, "abl.toml")
    return Driver(AblationPlan(load_ablation(path)), path.read_text(), Database.open(tmp_path / "armin.db"), **kw)


def rows(tmp_path):
    db = Database.open(tmp_path / "armin.db")
    with db.session() as s:
        study = Study.find_or_raise_by_name(s, "abl")
        trials = [(t.arm, t.seed, t.spec_version, json.loads(t.config_json)["train"]["steps"], t.state)
                  for t in study.trials]
        versions = [(v.version, v.forced, v.changes, v.spec_hash == study.spec_hash) for v in study.spec_versions]
        return trials, versions, json.loads(study.spec_json)


# ---------------------------------------------------------------- messages


def test_changed_paths_names_every_differing_leaf():
    old = {"train": {"steps": 20, "lr": 1.0}, "seed": 2, "arms": [1, 2]}
    new = {"train": {"steps": 30, "lr": 1.0}, "seed": 2, "arms": [1, 2, 3], "extra": True}
    assert changed_paths(old, new) == ["train.steps: 20 -> 30", "arms: [1, 2] -> [1, 2, 3]", "extra: (none) -> True"]
    assert changed_paths(old, old) == []
    assert summarize_changes(changed_paths(old, new), limit=1) == "train.steps: 20 -> 30; and 2 more"
    assert summarize_changes([]) == "no resolved value changed"


def test_a_refused_changed_contract_names_the_key_and_writes_nothing(tmp_path):
    started(tmp_path, spec())  # no Ray needed: the refusal comes before any trial
    before = (tmp_path / "armin.db").read_bytes()
    with pytest.raises(StudyChanged) as info:
        driver(tmp_path, spec(train={"steps": 30})).open_study()
    message = str(info.value)
    assert "train.steps: 20 -> 30" in message and "--force" in message and "\n" not in message, message
    assert (tmp_path / "armin.db").read_bytes() == before
    _, versions, stored = rows(tmp_path)
    assert versions == [(1, False, None, True)] and stored["train"]["steps"] == 20


def test_the_cli_refusal_is_one_line_exit_2(tmp_path, capsys):
    db = tmp_path / "armin.db"
    started(tmp_path, spec())
    path = write(tmp_path, spec(optimizer={"lr": 1e-2}), "changed.toml")
    before = db.read_bytes()
    assert main(["ablation", "run", str(path), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert "optimizer.lr: 0.001 -> 0.01" in err and len(err.splitlines()) == 1, err
    assert db.read_bytes() == before  # not even the driver lease was written


# ---------------------------------------------------------------- --force appends a version


def test_force_appends_a_version_each_trial_names_it_and_the_report_warns(ray_cluster, tmp_path):
    driver(tmp_path, spec()).run()
    # the contract changes (more steps) and a seed is added: forced, so version 2
    driver(tmp_path, spec(train={"steps": 30}, design={"seeds": [11, 12, 13]}), force=True).run()
    trials, versions, stored = rows(tmp_path)
    assert stored["train"]["steps"] == 30
    assert [v[:2] for v in versions] == [(1, False), (2, True)] and versions[1][3]
    assert "train.steps: 20 -> 30" in versions[1][2] and "seeds: [11, 12] -> [11, 12, 13]" in versions[1][2]
    # every attempt names the version it ran under, and ran with that version's steps
    assert sorted((v, steps) for _, _, v, steps, _ in trials) == [(1, 20)] * 4 + [(2, 30)] * 2
    assert {seed for _, seed, v, _, _ in trials if v == 2} == {13}

    data = load_study(tmp_path / "armin.db", "abl")
    assert list(data.mixed_versions()["version"]) == [1, 2]
    out = build_report(tmp_path / "armin.db", "abl", tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Spec history" in md and "Warning: these runs mix spec versions 1, 2" in md
    assert "train.steps: 20 -> 30" in md and "The spec as written (version 2)" in md
    history = (tmp_path / "report" / "spec_versions.csv").read_text().splitlines()
    assert history[0].startswith("version,created,forced,changes,attempts,final_runs") and len(history) == 3
    assert out.exists()


def test_an_unforced_growth_is_a_version_but_no_warning(ray_cluster, tmp_path):
    driver(tmp_path, spec()).run()
    driver(tmp_path, spec(design={"seeds": [11, 12, 13]})).run()
    driver(tmp_path, spec(design={"seeds": [11, 12, 13]})).run()  # the same spec again: no new version
    _, versions, _ = rows(tmp_path)
    assert [v[:2] for v in versions] == [(1, False), (2, False)]
    data = load_study(tmp_path / "armin.db", "abl")
    assert data.mixed_versions().empty
    build_report(tmp_path / "armin.db", "abl", tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Spec history" in md and "Warning: these runs mix" not in md


# ---------------------------------------------------------------- arms are models


def test_adding_a_factor_reuses_the_finished_runs_of_the_renamed_arms(ray_cluster, tmp_path, capsys):
    first = spec(factors={"model.cell": ["armin", "lstm"]})
    driver(tmp_path, first).run()
    before, _, _ = rows(tmp_path)
    assert sorted({a for a, *_ in before}) == ["cell=armin", "cell=lstm"]
    # read = "gumbel" is the model's default, so the old arms are the gumbel arms of the grown factorial
    grown = spec(factors={"model.cell": ["armin", "lstm"], "model.read": ["gumbel", "soft"]},
                 design={"baseline": {"model.cell": "armin", "model.read": "gumbel"}})
    driver(tmp_path, grown).run()
    after, _, _ = rows(tmp_path)
    assert len(after) == 8  # 4 old runs kept and relabelled, 4 new: nothing re-run
    assert sorted((a, s) for a, s, *_ in after) == sorted(
        (f"cell={c}, read={r}", s) for c in ("armin", "lstm") for r in ("gumbel", "soft") for s in (11, 12))
    assert [a for a, *_ in after[:4]] == [a + ", read=gumbel" for a, *_ in before]
    assert "is now named" in capsys.readouterr().err
    status = study_summary(Database.open(tmp_path / "armin.db", readonly=True), "abl")
    assert "results 8/8" in status, status


def test_results_of_a_removed_arm_are_kept_but_not_counted(ray_cluster, tmp_path):
    driver(tmp_path, spec(extra_arms={"wide": {"model.hidden_size": 12}})).run()
    driver(tmp_path, spec()).run()  # the extra arm is gone from the spec
    status = study_summary(Database.open(tmp_path / "armin.db", readonly=True), "abl")
    assert "results 4/4" in status and "2 more results of arms or seeds no longer in the spec" in status, status


@pytest.mark.parametrize("change,names", [
    (dict(extra_arms={"again": {"model.cell": "lstm"}}), "'cell=lstm' and 'again'"),
    (dict(extra_arms={"a": {"model.hidden_size": 12}, "b": {"model.hidden_size": 12}}), "'a' and 'b'"),
    (dict(extra_arms={"same": {"model.cell": "armin", "model.hidden_size": 8}}), "'cell=armin' and 'same'"),
])
def test_two_arms_with_one_model_are_refused_in_one_line(tmp_path, change, names):
    path = write(tmp_path, spec(**change), "dup.toml")
    with pytest.raises(ConfigError) as info:
        load_ablation(path)
    message = str(info.value)
    assert message.startswith(str(path)) and names in message and "same model" in message, message
    assert "allow_identical_arms" in message and "\n" not in message


def test_an_a_a_design_says_so_and_is_accepted(tmp_path):
    data = spec(extra_arms={"again": {"model.cell": "lstm"}}, design={"allow_identical_arms": True})
    s = load_ablation(write(tmp_path, data, "aa.toml"))
    assert s.allow_identical_arms and [a.name for a in s.arms] == ["cell=armin", "cell=lstm", "again"]
    with pytest.raises(ConfigError, match="design.allow_identical_arms: expected true or false"):
        load_ablation(write(tmp_path, spec(design={"allow_identical_arms": 1}), "bad.toml"))
