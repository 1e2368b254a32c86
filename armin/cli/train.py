"""`armin train`: train one model on one task and print (and optionally save) its metrics."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
import typing
from pathlib import Path

from armin.cli.options import OptionGroup, parse_assignment, translate
from armin.config import from_mapping
from armin.errors import ConfigError
from armin.model.config import ModelConfig, TemperatureSchedule
from armin.tasks import TASK_NAMES, TaskConfig
from armin.training.config import OptimizerConfig, RunConfig, TrainConfig

GROUPS = [
    OptionGroup(ModelConfig, ("model",)),
    OptionGroup(TemperatureSchedule, ("model", "temperature"), prefix="temperature_"),
    OptionGroup(OptimizerConfig, ("optimizer",), rename={"name": "optimizer"}),
    OptionGroup(TrainConfig, ("train",)),
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train one model on one task",
        description="Train one model on one task. Model flags choose the ablation arm; optimizer and "
                    "training flags are the settings every arm shares. Temperatures are temperatures "
                    "(softmax((logits+g)/tau)); --temperature-kind reference is the authors' inverse-"
                    "temperature schedule min(1 + ceil(step/400), 50).",
        epilog="example: armin train --task copy --task-option max_len=20 --cell armin "
               "--addressing hidden --steps 2000 --seed 1 --out copy.json")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="a TOML run config ([task], [model], [optimizer], [train], seed); flags override it")
    p.add_argument("--task", choices=TASK_NAMES, metavar="{" + ",".join(TASK_NAMES) + "}",
                   help="the task (default: copy)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task parameter, repeatable, e.g. max_len=20 or legacy_column_sort=true")
    p.add_argument("--data-dir", metavar="DIR",
                   help="the folder holding the data set, for tasks that read files (seq_mnist, perm_mnist: the "
                        "four MNIST IDX files; char_lm: enwik8 or ptb.char.{train,valid,test}.txt); default: a "
                        "small sample shipped with a package, labelled as such in the result")
    p.add_argument("--seed", type=int, help="run seed: derives data, init and Gumbel streams (default: 0)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the result (metrics, history, costs, config) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for group, title in zip(GROUPS, ["model", "Gumbel temperature schedule", "optimizer (shared by every arm)",
                                     "training budget and evaluation (shared by every arm)"]):
        group.add_to(p, title)
    p.set_defaults(func=run)


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    data: dict = {}
    if args.config is not None:
        try:
            data = tomllib.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{args.config}: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{args.config}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
        try:
            return _merge_and_build(data, args)
        except ConfigError as e:
            raise ConfigError(f"{args.config}: {e}") from None
    return _merge_and_build(data, args)


def _merge_and_build(data: dict, args: argparse.Namespace) -> RunConfig:
    task = dict(data.get("task", {}))
    if args.task is not None and args.task != task.get("name"):
        task = {"name": args.task}
    task.setdefault("name", "copy")
    task |= dict(parse_assignment(a) for a in args.task_option)
    if getattr(args, "data_dir", None) is not None:
        readers = [c.name for c in typing.get_args(TaskConfig) if "data_dir" in {f.name for f in dataclasses.fields(c)}]
        if task["name"] not in readers:
            raise ConfigError(f"--data-dir: task {task['name']!r} reads no data files (tasks that do: "
                              f"{', '.join(readers)})")
        task["data_dir"] = args.data_dir
    data = {**data, "task": task}
    if args.seed is not None:
        data["seed"] = args.seed
    flags: dict = {}
    for g in GROUPS:
        g.collect(args, flags)
    for section, values in flags.items():
        merged = {**data.get(section, {}), **values}
        if "temperature" in values:
            merged["temperature"] = {**data.get(section, {}).get("temperature", {}), **values["temperature"]}
        data[section] = merged
    try:
        return from_mapping(RunConfig, data, "cli")
    except ConfigError as e:
        text = str(translate(e, GROUPS))
        if text.startswith(("task.", "task:")):  # task parameters come from --task-option
            text = "--task-option " + text[len("task."):] if text.startswith("task.") else "--task-option" + text[4:]
        if text.startswith("seed:") and args.seed is not None:
            text = "--" + text
        raise ConfigError(text) from None


def check_writable(path: Path) -> None:
    """Refuse an `--out` that cannot be written before training, not after (one `ConfigError` line)."""
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"--out: {path} is a directory; give a file name, e.g. {path / 'result.json'}")
    if not folder.is_dir():
        raise ConfigError(f"--out: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"--out: {path} is not writable")


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def run(args: argparse.Namespace) -> int:
    from armin.cli.progress import TrainProgress
    from armin.training import train

    cfg = run_config_from_args(args)
    if args.out is not None:
        check_writable(args.out)
    print(f"task {cfg.task.name} | model {cfg.model.describe()} | seed {cfg.seed} | "
          f"{cfg.optimizer.name} lr {cfg.optimizer.lr:g} | {cfg.train.steps} steps x batch {cfg.train.batch_size}")
    with TrainProgress(cfg.train.steps, enabled=not args.quiet) as progress:
        result = train(cfg, report=lambda step, metrics: progress.log(format_metrics(metrics)),
                       progress=progress.update)
    print(f"{result.status}" + (f" at step {result.diverged_step}" if result.diverged_step else "") +
          f" | {result.n_params:,} parameters | {result.time_per_step_s * 1e3:.1f} ms/step (after "
          f"{result.warmup_steps} warm-up steps, {result.warmup_s:.2f} s) | peak step tensor memory "
          + (f"{result.peak_memory_bytes / 2**20:.2f} MiB" if result.peak_memory_bytes is not None else "not measured")
          + f" | {result.device}")
    if args.out is not None:
        args.out.write_text(json.dumps(result.to_dict(), indent=2))
        print(f"wrote {args.out}")
    return 0
