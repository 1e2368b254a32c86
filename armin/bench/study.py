"""`armin bench study`: what the platform costs per trial, next to what the trial itself costs.

For trials of about 1, 5 and 30 seconds of training, it runs a small study through the real driver
(Ray, Optuna, SQLite) one trial at a time and splits each trial's wall time into:
  prepare   the driver's own work before the Ray call: recording what came before (the first
            trial: the study's set-up), asking Optuna, writing the trial row
  dispatch  Ray call -> the worker starts the trial (scheduling, argument transfer, worker start)
  trial     the worker's own time (config, model build, training, evaluation)
  transfer  the worker yields the result -> the driver has it
  write     the driver records the result (trial row, costs, Optuna tell)
The marks are taken by `Timed`, a wrapper around the driver's executor (the driver has no timing
code): a trial's "begun" is when the driver last got control back from the executor before
submitting it, "written" when it says it has recorded the trial's outcome (`done`).
and reports the overhead (everything but `trial`) as a fraction of the trial. It then runs the
5-second study with 1 and with 2 trials at once: parallel efficiency = T(1) / (2 T(2)).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_SPEC = """
name = "{name}"
goal = "benchmark: platform overhead per trial"
seed = 0
[task]
name = "copy"
max_len = 5
[model]
hidden_size = 16
n_slots = 8
r_size = 8
[train]
steps = {steps}
batch_size = 8
eval_every = {eval_every}
eval_sequences = 16
eval_batch_size = 16
[search]
n_trials = {trials}
sampler = "random"
pruner = "none"
[objective]
metric = "eval_loss"
direction = "minimize"
[resources]
cpus = 1
[space]
"model.addressing" = {{ choices = ["hidden", "input_only"] }}
"""


@dataclass
class OverheadRow:
    target_s: float
    trials: int
    trial_s: float  # mean of the worker's own time per trial
    prepare_ms: float
    dispatch_ms: float
    transfer_ms: float
    write_ms: float
    overhead_ms: float  # per trial: ((first launch -> last result written) - sum of trial times) / trials
    overhead_ratio: float  # overhead / trial


def trial_seconds(steps: int) -> float:
    """Wall time of one benchmark trial run in this process, single-threaded like a 1-CPU trial."""
    import torch

    from armin.spec.search import build_run, parse_spec
    from armin.training import training_events

    torch.set_num_threads(1)
    spec = parse_spec(BENCH_SPEC.format(name="calibrate", steps=steps, eval_every=max(steps // 4, 1), trials=1),
                      "<bench>")
    start = time.perf_counter()
    for _ in training_events(build_run(spec, {"model.addressing": "hidden"}, 0)):
        pass
    return time.perf_counter() - start


def steps_for(seconds: float, fixed_s: float, step_s: float) -> int:
    return max(int((seconds - fixed_s) / step_s), 4)


class Timed:
    """An executor wrapper that marks each run's wall-clock times (begun, launched, started, result_sent,
    received, written); everything else is the inner executor's."""

    def __init__(self, inner):
        self.inner = inner
        self.marks: list[dict[str, float]] = []  # every run's marks, in submission order
        self.live: dict[int, dict[str, float]] = {}  # id(handle) -> marks, until the driver is done with it
        self.back = time.time()  # when the driver last got control back from the executor

    def __getattr__(self, name: str):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            finally:
                self.back = time.time()
        return timed

    def submit(self, job, resources):
        begun, launched = self.back, time.time()
        handle = self.inner.submit(job, resources)
        self.marks.append({"begun": begun, "launched": launched})
        self.live[id(handle)] = self.marks[-1]
        self.back = time.time()
        return handle

    def next_event(self, handles, timeout_s):
        got = self.inner.next_event(handles, timeout_s)
        now = self.back = time.time()
        if got is not None and isinstance(got[1], dict):
            marks, event = self.live[id(got[0])], got[1]
            if event["kind"] == "started":
                marks["started"] = event["t"]
            elif event["kind"] == "result":
                marks["result_sent"], marks["received"] = event["t"], now
        return got

    def done(self, handle):
        self.live.pop(id(handle))["written"] = time.time()
        self.inner.done(handle)
        self.back = time.time()


def run_study(db_dir: Path, name: str, steps: int, trials: int, max_parallel: int):
    from armin.orchestration.driver import Driver
    from armin.orchestration.executors.ray_executor import RayExecutor
    from armin.orchestration.plans import SearchPlan
    from armin.spec.search import parse_spec
    from armin.storage import Database

    text = BENCH_SPEC.format(name=name, steps=steps, eval_every=max(steps // 4, 1), trials=trials)
    timed = Timed(RayExecutor())
    driver = Driver(SearchPlan(parse_spec(text, "<bench>")), text, Database.open(db_dir / f"{name}.db"),
                    executor=timed, max_parallel=max_parallel, command="armin bench study")
    start = time.perf_counter()
    driver.run()
    return time.perf_counter() - start, [m for m in timed.marks if "result_sent" in m and "written" in m]


def overhead_row(target_s: float, trials: int, marks: list[dict]) -> OverheadRow:
    """Per-trial figures from serial runs; the study's one-off set-up is excluded (reported apart)."""
    med = lambda xs: statistics.median(xs)  # noqa: E731
    own = [m["result_sent"] - m["started"] for m in marks]
    span = max(m["written"] for m in marks) - min(m["begun"] for m in marks)
    gaps_s = (span - sum(own)) / trials  # serial trials: the span is trials plus the platform's gaps
    trial_s = statistics.mean(own)
    return OverheadRow(
        target_s=target_s, trials=trials, trial_s=trial_s,
        prepare_ms=1e3 * med([m["launched"] - m["begun"] for m in marks]),
        dispatch_ms=1e3 * med([m["started"] - m["launched"] for m in marks]),
        transfer_ms=1e3 * med([m["received"] - m["result_sent"] for m in marks]),
        write_ms=1e3 * med([m["written"] - m["received"] for m in marks]),
        overhead_ms=1e3 * gaps_s, overhead_ratio=gaps_s / trial_s)


def bench_study(durations: tuple[float, ...] = (1, 5, 30), trials: int = 3, as_json: bool = False) -> dict:
    import ray

    owns = not ray.is_initialized()
    if owns:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    trial_seconds(10)  # warm up this process
    short, long = trial_seconds(20), trial_seconds(220)
    step_s = (long - short) / 200  # marginal cost of a step; the rest is per-trial fixed cost
    fixed_s = max(short - 20 * step_s, 0.0)
    rows, setups = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_study(tmp, "warmup", 5, 2, 2)  # start the worker processes once, like a long study does
        for d in durations:
            wall, marks = run_study(tmp, f"serial-{d:g}s", steps_for(d, fixed_s, step_s), trials, 1)
            rows.append(overhead_row(d, trials, marks))
            setups.append(wall - (max(m["written"] for m in marks) - min(m["begun"] for m in marks)))
            if not as_json:
                print(format_row(rows[-1]), flush=True)
        steps = steps_for(5, fixed_s, step_s)
        t1, _ = run_study(tmp, "par1", steps, 4, 1)
        t2, _ = run_study(tmp, "par2", steps, 4, 2)
    if owns:
        ray.shutdown()
    out = {"seconds_per_step": step_s, "study_setup_s": statistics.median(setups),
           "overhead": [asdict(r) for r in rows],
           "parallel": {"trials": 4, "trial_target_s": 5, "wall_1_worker_s": t1, "wall_2_workers_s": t2,
                        "speedup": t1 / t2, "efficiency": t1 / (2 * t2)}}
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        p = out["parallel"]
        print(f"study set-up and shutdown (once per study, not per trial): {out['study_setup_s'] * 1e3:.0f} ms")
        print(f"parallel: 4 trials of ~5 s: 1 worker {t1:.1f} s, 2 workers {t2:.1f} s -> speedup "
              f"{p['speedup']:.2f}x, efficiency {p['efficiency']:.0%}")
    return out


def format_row(r: OverheadRow) -> str:
    return (f"trial ~{r.target_s:g} s (measured {r.trial_s:.2f} s, n={r.trials}): overhead {r.overhead_ms:.0f} ms/trial "
            f"= {r.overhead_ratio:.1%} of the trial [prepare {r.prepare_ms:.0f} ms, dispatch {r.dispatch_ms:.0f} ms, "
            f"transfer {r.transfer_ms:.1f} ms, write {r.write_ms:.0f} ms]")
