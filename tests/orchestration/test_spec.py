"""Study specs: the shipped specs load, every bad spec is one named line, and the Optuna seam."""

import copy
import dataclasses
import itertools
import json
import typing
from pathlib import Path

import optuna
import pytest

from armin.errors import ConfigError
from armin.orchestration.spec import (
    MEDIAN_STARTUP_TRIALS,
    build_run,
    grid_size,
    grid_space,
    load_spec,
    make_pruner,
    make_sampler,
    parse_spec,
    spec_hash,
    suggest,
    trial_seed,
)
from armin.seeding import derive_seed
from armin.spec.base import known_metrics
from armin.tasks import TaskConfig, task_class, task_configs
from spec_files import dump, write  # noqa: E402  (tests/orchestration/spec_files.py)

STUDIES = Path(__file__).resolve().parents[2] / "studies"

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = {
    "name": "t",
    "goal": "Does the spec loader work?",
    "seed": 3,
    "task": {"name": "copy", "max_len": 5},
    "model": {"hidden_size": 16, "n_slots": 8, "r_size": 8},
    "optimizer": {"name": "rmsprop", "lr": 1e-3},
    "train": {"steps": 100, "batch_size": 4, "eval_every": 50, "eval_sequences": 8},
    "search": {"n_trials": 4, "seeds_per_config": 1, "sampler": "random", "sampler_seed": 0, "pruner": "median",
               "max_retries": 2},
    "objective": {"metric": "bits_error", "direction": "minimize"},
    "resources": {"cpus": 1, "gpus": 0},
    "space": {
        "model.addressing": {"choices": ["hidden", "input_only", "tardis"]},
        "model.cell": {"choices": ["armin", "lstm"]},
        "model.hidden_size": {"low": 8, "high": 32, "step": 8},
        "model.temperature.start": {"low": 0.1, "high": 2.0, "log": True},
    },
}


def variant(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------- shipped specs


@pytest.mark.parametrize("name", ["copy_quick.toml", "copy_gpu.toml"])
def test_shipped_specs_load(name):
    spec = load_spec(STUDIES / name)
    assert spec.space and spec.search.n_trials >= 1


def test_every_spec_in_studies_loads():
    for path in sorted(STUDIES.glob("*.toml")):
        load_spec(path)


def test_base_spec_is_valid(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert [p.path for p in spec.space] == sorted(BASE["space"])


# ---------------------------------------------------------------- one line per problem, naming the key

BAD = [
    # (id, change, the message after "<file>: ", as a prefix)
    ("unknown-top-key", lambda d: d.update(colour=1), "unknown key 'colour'"),
    ("missing-name", lambda d: d.pop("name"), "name: missing"),
    ("missing-seed", lambda d: d.pop("seed"), "seed: missing"),
    ("bad-name", lambda d: d.update(name="a b"), "name: 'a b'"),
    ("empty-goal", lambda d: d.update(goal="  "), "goal: must be one non-empty line"),
    ("bool-seed", lambda d: d.update(seed=True), "seed: expected an integer"),
    ("missing-task", lambda d: d.pop("task"), "[task]: missing section"),
    ("missing-objective", lambda d: d.pop("objective"), "[objective]: missing section"),
    ("missing-search", lambda d: d.pop("search"), "[search]: missing section"),
    ("missing-space", lambda d: d.pop("space"), "[space]: missing section"),
    ("unknown-task", lambda d: d["task"].update(name="sorting"), "task.name: 'sorting' is not allowed"),
    ("bad-task-value", lambda d: d["task"].update(max_len=0), "task.max_len"),
    ("unknown-model-key", lambda d: d["model"].update(colour=1), "model: unknown key 'colour'"),
    ("wrong-model-type", lambda d: d["model"].update(n_slots="8"), "model.n_slots: expected an integer"),
    ("unknown-search-key", lambda d: d["search"].update(foo=1), "search: unknown key 'foo'"),
    ("wrong-search-type", lambda d: d["search"].update(n_trials="4"), "search.n_trials: expected an integer"),
    ("missing-sampler", lambda d: d["search"].pop("sampler"), "search.sampler: missing"),
    ("bad-sampler", lambda d: d["search"].update(sampler="cmaes"),
     "search.sampler: 'cmaes' is not allowed (choose from 'tpe', 'random', 'grid')"),
    ("bad-pruner", lambda d: d["search"].update(pruner="patient"), "search.pruner: 'patient' is not allowed"),
    ("zero-trials", lambda d: d["search"].update(n_trials=0), "search.n_trials: must be >= 1, got 0"),
    ("zero-seeds", lambda d: d["search"].update(seeds_per_config=0), "search.seeds_per_config: must be >= 1"),
    ("negative-retries", lambda d: d["search"].update(max_retries=-1), "search.max_retries: must be >= 0"),
    ("pruner-option-elsewhere", lambda d: d["search"].update(pruner="none", n_warmup_steps=10),
     "search.n_warmup_steps: only applies to pruner = 'median'"),
    ("tpe-option-elsewhere", lambda d: d["search"].update(tpe_startup_trials=3),
     "search.tpe_startup_trials: only applies to sampler = 'tpe'"),
    ("hyperband-min-resource", lambda d: d["search"].update(pruner="hyperband", min_resource=500),
     "search.min_resource: `min_resource <= train.steps` must hold, got min_resource=500, train.steps=100"),
    ("hyperband-factor", lambda d: d["search"].update(pruner="hyperband", reduction_factor=1),
     "search.reduction_factor: must be >= 2"),
    ("missing-direction", lambda d: d["objective"].pop("direction"), "objective.direction: missing"),
    ("unknown-metric", lambda d: d["objective"].update(metric="perplexity"),
     "objective.metric: 'perplexity' is not allowed"),
    ("accuracy-on-copy", lambda d: d["objective"].update(metric="accuracy", direction="maximize"),
     "objective.metric: 'accuracy' is recorded only by perm_mnist, seq_digits, seq_mnist"),
    ("bits-on-digits", lambda d: d.update(task={"name": "seq_digits"}),
     "objective.metric: 'bits_error' is recorded only by"),
    ("probe-without-memory", lambda d: d["objective"].update(metric="slot_usage") or d["space"].update(
        {"model.arch": {"choices": ["armin", "lstm"]}}), "objective.metric: 'slot_usage' is a memory probe"),
    ("wrong-direction", lambda d: d["objective"].update(direction="maximize"),
     "objective.direction: bits_error must be minimized"),
    ("zero-cpus", lambda d: d["resources"].update(cpus=0), "resources.cpus: must be > 0"),
    ("negative-gpus", lambda d: d["resources"].update(gpus=-0.5), "resources.gpus: must be >= 0"),
    ("cuda-without-gpu", lambda d: d["train"].update(device="cuda"), "resources.gpus: train.device is 'cuda'"),
    ("gpu-on-cpu", lambda d: d["resources"].update(gpus=0.5), "resources.gpus: 0.5 reserved"),
    ("empty-space", lambda d: d.update(space={}), "space: nothing to search"),
    ("bad-choice", lambda d: d["space"].update({"model.cell": {"choices": ["armin", "gru"]}}),
     "space.\"model.cell\": 'gru' is not an allowed value (choose from 'armin', 'lstm', 'tardis')"),
    ("bool-as-choice", lambda d: d["space"].update({"model.eval_noise": {"choices": [0, 1]}}),
     "space.\"model.eval_noise\": 0 is not an allowed value (choose from False, True)"),
    ("unknown-param", lambda d: d["space"].update({"model.colour": {"choices": [1, 2]}}),
     "space.\"model.colour\": unknown parameter (searchable: model.arch, "),
    ("search-optimizer", lambda d: d["space"].update({"optimizer.lr": {"low": 1e-4, "high": 1e-2}}),
     "space.\"optimizer.lr\": [optimizer] is fixed by design"),
    ("search-train", lambda d: d["space"].update({"train.steps": {"choices": [10, 20]}}),
     "space.\"train.steps\": [train] is fixed by design"),
    ("search-a-table", lambda d: d["space"].update({"model.temperature": {"choices": [1, 2]}}),
     "space.\"model.temperature\": is a table"),
    ("not-a-table", lambda d: d["space"].update({"model.cell": ["armin", "lstm"]}),
     "space.\"model.cell\": expected a table"),
    ("unknown-param-key", lambda d: d["space"].update({"model.n_slots": {"low": 4, "high": 8, "by": 2}}),
     "space.\"model.n_slots\": unknown key 'by'"),
    ("empty-choices", lambda d: d["space"].update({"model.cell": {"choices": []}}),
     "space.\"model.cell\": choices must be a non-empty list"),
    ("single-choice", lambda d: d["space"].update({"model.cell": {"choices": ["lstm"]}}),
     "space.\"model.cell\": a single choice 'lstm' is not a search"),
    ("repeated-choice", lambda d: d["space"].update({"model.n_slots": {"choices": [4, 4]}}),
     "space.\"model.n_slots\": choices repeat a value"),
    ("choices-and-range", lambda d: d["space"].update({"model.n_slots": {"choices": [4, 8], "low": 1}}),
     "space.\"model.n_slots\": 'low' cannot be combined with choices"),
    ("range-on-literal", lambda d: d["space"].update({"model.cell": {"low": 0, "high": 1}}),
     "space.\"model.cell\": takes one of 'armin', 'lstm'"),
    ("half-range", lambda d: d["space"].update({"model.n_slots": {"low": 4}}),
     "space.\"model.n_slots\": needs choices = [...], or both low and high"),
    ("low-above-high", lambda d: d["space"].update({"model.n_slots": {"low": 16, "high": 8}}),
     "space.\"model.n_slots\": `low <= high` must hold, got low=16, high=8"),
    ("low-equals-high", lambda d: d["space"].update({"model.n_slots": {"low": 8, "high": 8}}),
     "space.\"model.n_slots\": low == high == 8 is not a search"),
    ("float-for-int", lambda d: d["space"].update({"model.n_slots": {"low": 4.0, "high": 8}}),
     "space.\"model.n_slots\": low: expected an integer"),
    ("log-nonpositive", lambda d: d["space"].update({"model.temperature.start": {"low": 0.0, "high": 1.0, "log": True}}),
     "space.\"model.temperature.start\": a log range needs low > 0, got low=0.0"),
    ("log-and-step", lambda d: d["space"].update({"model.temperature.start": {"low": 0.1, "high": 1.1, "step": 0.5,
                                                                               "log": True}}),
     "space.\"model.temperature.start\": log cannot be combined with step=0.5"),
    ("zero-step", lambda d: d["space"].update({"model.n_slots": {"low": 4, "high": 8, "step": 0}}),
     "space.\"model.n_slots\": step must be > 0"),
    ("step-not-multiple", lambda d: d["space"].update({"model.n_slots": {"low": 4, "high": 9, "step": 2}}),
     "space.\"model.n_slots\": `high - low` must be a multiple of step"),
    ("model-rejects-low", lambda d: d["space"].update({"model.n_slots": {"low": 0, "high": 8}}),
     "space.\"model.n_slots\": low=0 is invalid (model.n_slots: must be >= 1, got 0)"),
    ("model-rejects-temperature", lambda d: d["space"].update({"model.temperature.end": {"low": 0.0, "high": 1.0}}),
     "space.\"model.temperature.end\": low=0.0 is invalid (model.temperature.start: temperatures must be > 0"),
    ("model-rejects-choice", lambda d: d["space"].update({"model.temperature.kind": {"choices": ["constant",
                                                                                                "linear"]}}),
     "space.\"model.temperature.kind\": choice 'linear' is invalid (model.temperature.steps: a linear anneal"),
    ("invalid-combination", lambda d: d["space"].update({"model.hidden_size": {"low": 2, "high": 8, "step": 2}}),
     "space: the combination model.addressing='tardis', model.cell='armin', model.hidden_size=2"),
    ("grid-float-without-step", lambda d: d["search"].update(sampler="grid"),
     "space.\"model.temperature.start\": a grid sampler needs a step for a float range"),
    ("grid-too-small", lambda d: d["search"].update(sampler="grid", n_trials=50) or d["space"].update(
        {"model.temperature.start": {"choices": [0.5, 1.0]}}),
     "search.n_trials: 50 is more than the grid's 48 points"),
    ("lr-inf", lambda d: d["optimizer"].update(lr=float("inf")), "optimizer.lr: must be a finite number, got inf"),
    ("eps-nan", lambda d: d["optimizer"].update(eps=float("nan")), "optimizer.eps: must be a finite number, got nan"),
    ("clip-inf", lambda d: d["optimizer"].update(clip_threshold=float("inf")),
     "optimizer.clip_threshold: must be a finite number, got inf"),
    ("temperature-inf", lambda d: d["model"].update(temperature={"end": float("inf")}),
     "model.temperature.end: must be a finite number, got inf"),
    ("device-typo", lambda d: d["train"].update(device="cudafoo") or d["resources"].update(gpus=1),
     "train.device: must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got 'cudafoo'"),
    ("device-index", lambda d: d["train"].update(device="cuda:abc") or d["resources"].update(gpus=1),
     "train.device: must be 'cpu', 'cuda' or 'cuda:N'"),
    ("negative-eval-seed", lambda d: d["train"].update(eval_seed=-1), "train.eval_seed: must be >= 0, got -1"),
    ("long-name", lambda d: d.update(name="a" * 5000), "name: at most 100 characters, got 5,000 (aaaa"),
]


@pytest.mark.parametrize("change, expected", [pytest.param(c, e, id=i) for i, c, e in BAD])
def test_bad_spec_is_one_line_naming_file_and_key(tmp_path, change, expected):
    path = write(tmp_path, variant(change))
    message = load_error(path)
    assert message.startswith(f"{path}: {expected}"), message


def test_malformed_toml_is_one_line_with_the_file(tmp_path):
    path = write(tmp_path, 'name = "copy\nseed = 0\n')
    message = load_error(path)
    assert message.startswith(f"{path}: invalid TOML: "), message
    assert "line 1" in message


def test_missing_file_is_one_line(tmp_path):
    path = tmp_path / "nope.toml"
    message = load_error(path)
    assert message.startswith(f"{path}: cannot read the spec"), message


def test_nested_space_tables_equal_quoted_paths(tmp_path):
    nested = variant(lambda d: d.update(space={"model": {"cell": {"choices": ["armin", "lstm"]},
                                                         "temperature": {"start": {"low": 0.5, "high": 1.0}}}}))
    quoted = variant(lambda d: d.update(space={"model.cell": {"choices": ["armin", "lstm"]},
                                               "model.temperature.start": {"low": 0.5, "high": 1.0}}))
    assert load_spec(write(tmp_path, nested, "a.toml")) == load_spec(write(tmp_path, quoted, "b.toml"))


def test_every_task_has_a_headline_metric():
    # A new task must say which task-specific metric it records, or objective checks would crash: its
    # `Task` class says it (no table in the spec layer), and every shipped config is registered.
    assert set(typing.get_args(TaskConfig)) == set(task_configs())
    for cfg in task_configs():
        task = task_class(cfg)
        assert isinstance(task.metric, str) and isinstance(task.higher_is_better, bool)
        assert known_metrics()[task.metric] == ("maximize" if task.higher_is_better else "minimize")


# ---------------------------------------------------------------- resolution and hashing


def test_omitted_policy_settings_are_resolved_into_the_spec(tmp_path):
    spec = load_spec(write(tmp_path, variant(lambda d: d["search"].pop("sampler_seed"))))
    assert spec.search.sampler_seed == BASE["seed"]
    assert spec.search.n_startup_trials == MEDIAN_STARTUP_TRIALS and spec.search.n_warmup_steps == 0
    assert spec.search.min_resource is None  # not hyperband: stays unset
    hb = load_spec(write(tmp_path, variant(lambda d: d["search"].update(pruner="hyperband")), "hb.toml"))
    assert hb.search.min_resource == BASE["train"]["eval_every"] and hb.search.n_startup_trials is None


def test_spec_hash_ignores_formatting_and_order():
    text = dump(BASE)
    reformatted = "# a comment\n\n" + text.replace(" = ", "   =   ").replace("\n[", "\n\n# section\n[")
    reordered = dump({**{k: BASE[k] for k in reversed(list(BASE))},
                      "space": dict(reversed(list(BASE["space"].items())))})
    explicit_default = dump(variant(lambda d: d["search"].update(n_startup_trials=MEDIAN_STARTUP_TRIALS)))
    assert spec_hash(text) == spec_hash(reformatted) == spec_hash(reordered) == spec_hash(explicit_default)
    assert spec_hash(parse_spec(text, "x.toml")) == spec_hash(text)


@pytest.mark.parametrize("change", [
    lambda d: d["optimizer"].update(lr=2e-3),
    lambda d: d["train"].update(steps=101),
    lambda d: d["space"]["model.hidden_size"].update(high=40),
    lambda d: d.update(goal="Another question?"),
    lambda d: d.update(seed=4),
])
def test_spec_hash_changes_with_any_value(change):
    assert spec_hash(dump(variant(change))) != spec_hash(dump(BASE))


# ---------------------------------------------------------------- runs from parameters


@pytest.fixture
def spec(tmp_path):
    return load_spec(write(tmp_path, BASE))


PARAMS_A = {"model.addressing": "tardis", "model.cell": "lstm", "model.hidden_size": 24,
            "model.temperature.start": 0.3}
PARAMS_B = {"model.addressing": "hidden", "model.cell": "armin", "model.hidden_size": 8,
            "model.temperature.start": 1.7}


def test_build_run_applies_params_over_the_fixed_model(spec):
    run = build_run(spec, PARAMS_A, seed=11)
    assert (run.model.addressing, run.model.cell, run.model.hidden_size) == ("tardis", "lstm", 24)
    assert run.model.temperature.start == 0.3
    assert (run.model.n_slots, run.model.r_size) == (8, 8)  # fixed values kept
    assert run.seed == 11


def test_build_run_keeps_task_optimizer_and_train_identical(spec):
    a, b = build_run(spec, PARAMS_A, seed=1), build_run(spec, PARAMS_B, seed=2)
    assert a.model != b.model
    assert (a.task, a.optimizer, a.train) == (b.task, b.optimizer, b.train) == (spec.task, spec.optimizer, spec.train)


def test_build_run_rejects_an_invalid_combination(spec):
    with pytest.raises(ConfigError, match="hidden_size: tardis addressing needs hidden_size >= 4"):
        build_run(spec, PARAMS_A | {"model.hidden_size": 2}, seed=0)


@pytest.mark.parametrize("params", [
    {k: v for k, v in PARAMS_A.items() if k != "model.cell"},
    PARAMS_A | {"model.n_slots": 4},
])
def test_build_run_needs_exactly_the_searched_params(spec, params):
    with pytest.raises(ConfigError, match="parameters do not match the space"):
        build_run(spec, params, seed=0)


# ---------------------------------------------------------------- Optuna seam


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_suggest_stays_inside_the_space_with_the_right_types(tmp_path, sampler):
    spec = load_spec(write(tmp_path, variant(lambda d: d["search"].update(sampler=sampler))))
    study = optuna.create_study(sampler=make_sampler(spec), pruner=make_pruner(spec), direction="minimize")
    for i in range(12):
        trial = study.ask()
        params = suggest(trial, spec)
        assert set(params) == {p.path for p in spec.space} == set(trial.params)
        assert params["model.addressing"] in ("hidden", "input_only", "tardis")
        assert params["model.cell"] in ("armin", "lstm")
        h = params["model.hidden_size"]
        assert type(h) is int and 8 <= h <= 32 and h % 8 == 0
        t = params["model.temperature.start"]
        assert type(t) is float and 0.1 <= t <= 2.0
        build_run(spec, params, seed=0)
        study.tell(trial, float(i))


def test_grid_sampler_enumerates_exactly_the_grid(tmp_path):
    data = variant(lambda d: d["search"].update(sampler="grid", n_trials=18) or d.update(space={
        "model.cell": {"choices": ["armin", "lstm"]},
        "model.hidden_size": {"low": 16, "high": 32, "step": 8},
        "model.temperature.start": {"low": 0.5, "high": 1.5, "step": 0.5},
    }))
    spec = load_spec(write(tmp_path, data))
    assert grid_size(spec) == 18
    assert grid_space(spec)["model.temperature.start"] == [0.5, 1.0, 1.5]
    study = optuna.create_study(sampler=make_sampler(spec), direction="minimize")
    seen = []
    for _ in range(grid_size(spec)):
        trial = study.ask()
        p = suggest(trial, spec)
        seen.append((p["model.cell"], p["model.hidden_size"], p["model.temperature.start"]))
        study.tell(trial, 0.0)
    assert sorted(seen) == sorted(itertools.product(["armin", "lstm"], [16, 24, 32], [0.5, 1.0, 1.5]))


def test_grid_sampler_survives_ask_and_tell_with_enqueued_replicates(tmp_path):
    # Optuna's own GridSampler raises from `tell` here (study.stop() outside optimize, KeyError
    # 'grid_id' for an enqueued trial); the driver runs replicates exactly like this.
    data = variant(lambda d: d["search"].update(sampler="grid", n_trials=4, seeds_per_config=2) or d.update(
        space={"model.cell": {"choices": ["armin", "lstm"]}, "model.hidden_size": {"low": 8, "high": 16, "step": 8}}))
    spec = load_spec(write(tmp_path, data))
    study = optuna.create_study(sampler=make_sampler(spec), direction="minimize")
    configs = []
    for _ in range(spec.search.n_trials):
        first = study.ask()
        params = suggest(first, spec)
        study.enqueue_trial(params)
        replicate = study.ask()
        assert suggest(replicate, spec) == params
        configs.append(tuple(sorted(params.items())))
        study.tell(replicate, 1.0)
        study.tell(first, 0.0)
    assert len(set(configs)) == grid_size(spec) == 4


def test_grid_size_is_none_for_other_samplers(spec):
    assert grid_size(spec) is None


def test_samplers_and_pruners_are_the_ones_named(tmp_path, spec):
    assert isinstance(make_sampler(spec), optuna.samplers.RandomSampler)
    median = make_pruner(spec)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (MEDIAN_STARTUP_TRIALS, 0)
    hb_spec = load_spec(write(tmp_path, variant(lambda d: d["search"].update(
        sampler="tpe", tpe_startup_trials=3, pruner="hyperband", min_resource=10, reduction_factor=2)), "hb.toml"))
    tpe, hb = make_sampler(hb_spec), make_pruner(hb_spec)
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 3
    assert isinstance(hb, optuna.pruners.HyperbandPruner)
    assert (hb._min_resource, hb._max_resource, hb._reduction_factor) == (10, hb_spec.train.steps, 2)
    none = load_spec(write(tmp_path, variant(lambda d: d["search"].update(pruner="none")), "none.toml"))
    assert isinstance(make_pruner(none), optuna.pruners.NopPruner)


def test_trial_seed_differs_by_config_and_replicate_and_is_stable(tmp_path, spec):
    seeds = {trial_seed(spec, c, r) for c in range(4) for r in range(3)}
    assert len(seeds) == 12
    assert trial_seed(spec, 2, 1) == derive_seed(BASE["seed"], "trial", 2, 1)
    again = load_spec(write(tmp_path, BASE, "again.toml"))
    assert trial_seed(again, 2, 1) == trial_seed(spec, 2, 1)
    other = dataclasses.replace(spec, seed=spec.seed + 1)
    assert trial_seed(other, 2, 1) != trial_seed(spec, 2, 1)
