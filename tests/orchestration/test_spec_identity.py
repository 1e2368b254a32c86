"""One serialisation, one digest, and the stored spec parsed back: a stored study is still itself.

The driver's contract check is run in-process (`Driver.open_study` touches only the database): a
study row written by the armin before the spec layer (its own JSON and contract-hash serialisation)
must be recognised as the same contract, and a real change still refused naming the key.
"""

import hashlib
import json
from pathlib import Path

import pytest

from armin.config import dumps, to_mapping
from armin.orchestration.driver import Driver, StudyChanged
from armin.orchestration.plans import AblationPlan, SearchPlan
from armin.spec import stored_digest, stored_spec
from armin.spec.ablation import CONTRACT_SECTIONS, contract_hash, load_ablation, parse_ablation
from armin.spec.base import stored_json
from armin.spec.search import load_spec, spec_hash
from armin.storage import Database, Study
from spec_files import dump
from test_ablation import spec as ablation_data

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [*sorted((ROOT / "studies").glob("*.toml")), *sorted((ROOT / "ablations").glob("*.toml"))]


def parse_shipped(path: Path):
    return load_spec(path) if path.parent.name == "studies" else load_ablation(path)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_spec_parses_back_from_its_stored_form_to_the_same_dataclass(path):
    spec = parse_shipped(path)
    kind = "search" if path.parent.name == "studies" else "ablation"
    stored = stored_json(spec)
    assert stored_spec(kind, stored) == spec
    assert stored_digest(kind, stored) == (spec_hash(spec) if kind == "search" else contract_hash(spec))


def test_the_stored_form_is_the_one_serialisation():
    spec = parse_shipped(SHIPPED[0])
    assert stored_json(spec) == dumps(to_mapping(spec)) == json.dumps(to_mapping(spec), sort_keys=True,
                                                                       separators=(",", ":"))


def old_serialisation(row: Study, plan) -> None:
    """The row as the armin before the spec layer wrote it: JSON with spaces, and its own contract hash."""
    mapping = json.loads(row.spec_json)
    row.spec_json = json.dumps(mapping, sort_keys=True, default=str)
    if plan.kind == "ablation":
        contract = {k: v for k, v in mapping.items() if k in CONTRACT_SECTIONS}
        row.spec_hash = hashlib.sha256(json.dumps(contract, sort_keys=True).encode()).hexdigest()
    for version in row.spec_versions:
        version.spec_json, version.spec_hash = row.spec_json, row.spec_hash


def open_study(db, data) -> Driver:
    plan = AblationPlan(parse_ablation(dump(data), "abl.toml"))
    driver = Driver(plan, dump(data), db, command="test")
    driver.open_study()
    return driver


def test_an_ablation_stored_under_the_old_serialisation_is_the_same_contract(tmp_path):
    db = Database.open(tmp_path / "armin.db")
    first = open_study(db, ablation_data())
    with db.session() as s:
        row = Study.find_or_raise_by_name(s, "abl")
        old_serialisation(row, first.plan)
        old_hash = row.spec_hash
    assert old_hash != first.plan.digest()  # the old hash was serialised differently: the content decides
    open_study(db, ablation_data())  # the same spec: no refusal, no new version
    with db.session() as s:
        assert [v.version for v in Study.find_or_raise_by_name(s, "abl").spec_versions] == [1]
    open_study(db, ablation_data(design={"seeds": [11, 12, 13]}))  # a seed more: same contract, not forced
    with db.session() as s:
        assert [(v.version, v.forced) for v in Study.find_or_raise_by_name(s, "abl").spec_versions] == \
               [(1, False), (2, False)]
    with pytest.raises(StudyChanged, match=r"optimizer.lr: 0.001 -> 0.01"):
        open_study(db, ablation_data(optimizer={"lr": 1e-2}))


def test_a_search_hash_is_unchanged_by_the_spec_layer_and_recognised_from_the_stored_content(tmp_path):
    spec = parse_shipped(ROOT / "studies" / "copy_quick.toml")
    db = Database.open(tmp_path / "armin.db")
    plan = SearchPlan(spec)
    Driver(plan, "", db, command="test").open_study()
    with db.session() as s:
        row = Study.find_or_raise_by_name(s, spec.name)
        old_serialisation(row, plan)
        assert row.spec_hash == plan.digest() == plan.stored_digest(row.spec_json)
