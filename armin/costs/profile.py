"""A cost profile of several arms: each configuration measured like a benchmark, all in one process.

Every arm gets its own model and optimizer, built as its trials build them. Then, round after
round (the starting arm rotating, so no arm always follows the same one), each arm runs
`steps_per_round` training steps -- `armin.training.trainer.training_step`, the very function trials
time -- and as many no-grad eval-mode forwards on batches drawn from one per-round stream, so round
r is the same data for every arm: rounds are the paired units of the speed verdicts
(`armin.costs.speed`). Arms take turns step by step (arm A's step k, arm B's step k, ...), so a change in the machine's
load hits every arm of a round alike, and a round's sample is the median over its steps (a step
preempted by another process does not move it). Times are the process's CPU time when one CPU thread does
all the work (a trial's default), wall time otherwise (`clock_name`). The first `warmup_rounds` are not recorded (the C++ loop is loaded before
anything runs). After the timed rounds, warm: the peak tensor memory of one training step and its
FLOPs (`armin.costs.measure`; FLOPs counted on the eager step loop, whose matmuls the fused kernel
also does but the counter cannot see inside C++), and the parameter count.

Pure torch: `armin bench model --spec` calls it in-process, the study driver in one Ray task with a
trial's resources (`armin.costs.hook`).
"""

from __future__ import annotations

import math
import socket
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from armin.config import to_mapping
from armin.costs.measure import count_flops, device_name, peak_tensor_bytes, sync
from armin.costs.settings import Settings
from armin.costs.warm import prepare
from armin.model import count_parameters
from armin.seeding import COST_PROFILE, DATA, GUMBEL, derive_seed
from armin.tasks import build_task
from armin.training.config import RunConfig
from armin.training.trainer import allocate_model, make_optimizer, training_step, usable_device

@dataclass
class ArmProfile:
    arm: str
    config: dict  # the RunConfig profiled, as a mapping
    n_params: int
    flops_per_step: int
    peak_step_bytes: int | None  # None: the measured step diverged
    batch_size: int
    train_step_s: list[float] = field(default_factory=list)  # per round: median seconds of its training steps
    infer_s: list[float] = field(default_factory=list)  # per round: median seconds of its inference batches
    elements: list[float] = field(default_factory=list)  # per round: mean sequence elements per batch


@dataclass
class Profile:
    device: str
    host: str
    threads: int
    clock: str  # CLOCKS' key: what the times measure
    warmup_rounds: int
    steps_per_round: int
    arms: list[ArmProfile]

    def samples(self) -> pd.DataFrame:
        """One row per (arm, round): train_step_s, infer_s, elements."""
        return pd.DataFrame([{"arm": a.arm, "round": r, "train_step_s": t, "infer_s": i, "elements": e}
                             for a in self.arms for r, (t, i, e) in enumerate(zip(a.train_step_s, a.infer_s,
                                                                                  a.elements))],
                            columns=["arm", "round", "train_step_s", "infer_s", "elements"])


class _Arm:
    """One arm's model, optimizer and task, stepping as its trials do."""

    def __init__(self, name: str, run: RunConfig, device: torch.device, clock=time.perf_counter):
        self.name, self.run, self.device, self.clock = name, run, device, clock
        self.dtype = getattr(torch, run.train.dtype)
        self.task = build_task(run.task)
        self.model = allocate_model(run, self.task, device, self.dtype)
        self.params = list(self.model.parameters())
        self.opt = make_optimizer(run.optimizer, self.params)

    def streams(self, r: int) -> tuple[torch.Generator, torch.Generator]:
        seed = self.run.seed
        return (torch.Generator().manual_seed(derive_seed(seed, COST_PROFILE, r, DATA)),
                torch.Generator().manual_seed(derive_seed(seed, COST_PROFILE, r, GUMBEL)))

    def step(self, k: int, data: torch.Generator, gumbel: torch.Generator):
        self.model.train()
        return training_step(self.model, self.task, self.run, self.opt, self.params, data, gumbel, k + 1, None,
                             self.device, self.dtype)

    def begin_round(self, r: int, steps: int) -> None:
        """Round r's streams, and its inference batches drawn up front (their sampling is not inference)."""
        self.data, self.gumbel = self.streams(r)
        infer_data, self.infer_gumbel = self.streams(r)
        self.batches = [self.task.sample(self.run.train.batch_size, infer_data).to(self.device, self.dtype)
                        for _ in range(steps)]

    def train_once(self, k: int) -> tuple[float, int]:
        """(seconds, sequence elements) of training step k of the round (stateful tasks start it fresh)."""
        sync(self.device)
        start = self.clock()
        done = self.step(k, self.data, self.gumbel)
        sync(self.device)
        return self.clock() - start, done.elements

    def infer_once(self, k: int) -> float:
        """Seconds of a no-grad eval-mode forward of the round's batch k."""
        self.model.eval()
        sync(self.device)
        start = self.clock()
        with torch.no_grad():
            self.model(self.batches[k].inputs, temperature=self.run.model.temperature(0), generator=self.infer_gumbel)
        sync(self.device)
        self.model.train()
        return self.clock() - start

    def peak(self) -> int | None:
        """Peak tensor bytes of one warm training step (None if its loss was not finite)."""
        data, gumbel = self.streams(-1)
        peak, done = peak_tensor_bytes(lambda: self.step(0, data, gumbel), self.device)
        return peak if math.isfinite(done.loss) else None


CLOCKS = {"cpu time": time.process_time, "wall": time.perf_counter}


def clock_name(device: torch.device, threads: int) -> str:
    """One thread on CPU: the process's CPU time, which time slices lost to other processes do not inflate (the
    work done, what a shared machine cannot measure by wall clock); else wall time (GPU work, parallel threads)."""
    return "cpu time" if device.type == "cpu" and threads == 1 else "wall"


def step_flops(run: RunConfig) -> int:
    """FLOPs of one training step of `run`, counted on a CPU twin's eager loop (FLOPs do not depend on the
    device, and the counter sees neither inside the C++ loop nor inside cuDNN)."""
    twin = _Arm("flops", replace(run, train=replace(run.train, device="cpu")), torch.device("cpu"))
    if hasattr(twin.model, "impl"):
        twin.model.impl = "eager"
    data, gumbel = twin.streams(-2)
    return count_flops(lambda: twin.step(0, data, gumbel))


def profile_arms(runs: Mapping[str, RunConfig], settings: Settings = Settings(), *,
                 progress: Callable[[str], None] | None = None) -> Profile:
    """Profile every (arm name -> run) on the device the runs name (they must share it)."""
    devices = {r.train.device for r in runs.values()}
    if len(devices) != 1:
        raise ValueError(f"a cost profile runs on one device, but the arms name {sorted(devices)}")
    device = usable_device(devices.pop())
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    if device.type == "cpu":
        prepare()
    clock = CLOCKS[clock_name(device, torch.get_num_threads())]
    arms = [_Arm(name, run, device, clock) for name, run in runs.items()]
    out = {a.name: ArmProfile(a.name, to_mapping(a.run), count_parameters(a.model), 0, None, a.run.train.batch_size)
           for a in arms}
    steps = settings.steps_per_round
    for r in range(settings.warmup_rounds + settings.rounds):
        train: dict[str, list[float]] = {a.name: [] for a in arms}
        infer: dict[str, list[float]] = {a.name: [] for a in arms}
        elements = {a.name: 0 for a in arms}
        for a in arms:
            a.begin_round(r, steps)
        for k in range(steps):  # step by step, arm by arm: every arm's step k sees the same machine load
            first = (r * steps + k) % len(arms)  # rotate who goes first
            for a in arms[first:] + arms[:first]:
                dt, n = a.train_once(k)
                train[a.name].append(dt)
                elements[a.name] += n
            for a in arms[first:] + arms[:first]:
                infer[a.name].append(a.infer_once(k))
        if r >= settings.warmup_rounds:
            for a in arms:
                p = out[a.name]
                p.train_step_s.append(statistics.median(train[a.name]))
                p.infer_s.append(statistics.median(infer[a.name]))
                p.elements.append(elements[a.name] / steps)
        if progress is not None:
            progress(f"cost profile: round {r + 1}/{settings.warmup_rounds + settings.rounds}")
    for a in arms:
        out[a.name].peak_step_bytes, out[a.name].flops_per_step = a.peak(), step_flops(a.run)
    return Profile(device=device_name(device), host=socket.gethostname(), threads=torch.get_num_threads(),
                   clock=clock_name(device, torch.get_num_threads()),
                   warmup_rounds=settings.warmup_rounds, steps_per_round=steps, arms=list(out.values()))
