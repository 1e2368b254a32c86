"""A task is added in one place: a config, a `Task` subclass and `armin.tasks.register`.

The task below lives only in this test. Registering it is all it takes for a study spec, an
ablation spec and a run config to accept it and for its metric to be a valid objective; the spec
layer keeps no table of tasks or metrics to edit. Runs are in-process on a tiny budget (no Ray).
"""

from dataclasses import dataclass
from typing import Literal

import pytest
import torch
import torch.nn.functional as F

from armin.config import from_mapping
from armin.errors import ConfigError
from armin.spec import stored_spec
from armin.spec.ablation import build_arm_run, parse_ablation
from armin.spec.base import known_metrics, stored_json
from armin.spec.search import build_run, parse_spec
from armin.tasks import Batch, Task, register, task_configs, unregister
from armin.training import RunConfig, train
from spec_files import dump  # tests/orchestration/spec_files.py


@dataclass(frozen=True)
class ParityConfig:
    name: Literal["parity"] = "parity"
    length: int = 4  # bits per sequence


class ParityTask(Task):
    """The parity of `length` random bits, classified from the last step (2 classes)."""

    input_size, output_size = 1, 2
    metric, higher_is_better = "parity_error", False

    def __init__(self, cfg: ParityConfig) -> None:
        self.cfg = cfg

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        bits = torch.randint(0, 2, (self.cfg.length, batch_size, 1), generator=generator)  # (T, B, 1)
        return Batch(bits.float(), bits.sum(dim=(0, 2)) % 2)  # targets (B,)

    def eval_set(self, n_sequences: int, batch_size: int, generator: torch.Generator) -> list[Batch]:
        return [self.sample(batch_size, generator) for _ in range(max(1, n_sequences // batch_size))]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits[-1], batch.targets)

    def metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        wrong = logits[-1].argmax(dim=-1) != batch.targets
        return {"loss": float(self.loss(logits, batch)), "parity_error": float(wrong.float().mean())}


@pytest.fixture
def parity():
    register(ParityConfig, ParityTask)
    yield
    unregister(ParityConfig)


COMMON = {
    "goal": "Does a task defined in a test run?",
    "seed": 1,
    "task": {"name": "parity", "length": 3},
    "model": {"hidden_size": 8, "n_slots": 4, "r_size": 4},
    "train": {"steps": 4, "batch_size": 4, "eval_every": 2, "eval_sequences": 8, "eval_batch_size": 8},
}
SEARCH = {"name": "parity-search", **COMMON,
          "search": {"n_trials": 2, "sampler": "random", "pruner": "none"},
          "objective": {"metric": "parity_error", "direction": "minimize"},
          "space": {"model.cell": {"choices": ["armin", "lstm"]}}}
ABLATION = {"name": "parity-ablation", **COMMON,
            "factors": {"model.cell": ["armin", "lstm"]},
            "design": {"baseline": {"model.cell": "armin"}, "seeds": 2},
            "objective": {"metric": "parity_error", "direction": "minimize", "rope": 0.05}}


def test_a_registered_task_is_a_spec_task_with_its_metric_and_trains(parity):
    assert ParityConfig in task_configs() and known_metrics()["parity_error"] == "minimize"
    spec = parse_spec(dump(SEARCH), "parity.toml")
    assert spec.task == ParityConfig(length=3)
    run = build_run(spec, {"model.cell": "lstm"}, seed=5)
    result = train(run)
    assert result.status == "completed" and 0.0 <= result.final["parity_error"] <= 1.0
    assert [h["step"] for h in result.history] == [2, 4]
    # the stored spec parses back as the same dataclass, the new task included
    assert stored_spec("search", stored_json(spec)) == spec

    ablation = parse_ablation(dump(ABLATION), "parity-ablation.toml")
    arm = ablation.arm("cell=lstm")
    assert build_arm_run(ablation, arm, ablation.seeds[0]).task == ParityConfig(length=3)
    assert stored_spec("ablation", stored_json(ablation)) == ablation
    # a run config names it by `name`, as every task
    assert from_mapping(RunConfig, {"task": {"name": "parity"}}, "run").task == ParityConfig()


def test_the_new_tasks_metric_rules_come_from_its_class(parity):
    wrong = {**SEARCH, "objective": {"metric": "parity_error", "direction": "maximize"}}
    with pytest.raises(ConfigError, match=r"^parity.toml: objective.direction: parity_error must be minimized"):
        parse_spec(dump(wrong), "parity.toml")
    other = {**SEARCH, "task": {"name": "copy", "max_len": 3}}
    with pytest.raises(ConfigError, match=r"'parity_error' is recorded only by parity; task 'copy' records "
                                          r"bits_error, eval_loss, train_loss"):
        parse_spec(dump(other), "copy.toml")


def test_an_unregistered_task_is_refused_naming_the_registered_ones():
    with pytest.raises(ConfigError) as info:
        parse_spec(dump(SEARCH), "parity.toml")
    assert str(info.value).startswith("parity.toml: task.name: 'parity' is not allowed (choose from 'copy'")
