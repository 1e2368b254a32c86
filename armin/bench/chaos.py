"""`armin bench chaos`: random worker, node and driver kills during real studies, invariants checked every round.

A private Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head with no CPUs, so it never
dies with a trial on it, and worker nodes of one CPU each) runs studies driven by the real CLI
(`armin ablation|study run ... --address`, then `resume` after each driver kill). Each round waits
for a trial to be running, then kills at random one of:
  worker  SIGKILL of a Ray worker process running a trial (found under our raylets only)
  node    a worker node's processes killed at once (then a fresh node joins)
  driver  SIGKILL of the driver's process group; the next round starts `resume`
and then checks, on one consistent snapshot of the database (SQLite's backup API, so a live
driver's writes never make two readings disagree):
  - each slot (configuration, seed) has at most one result;
  - the results in `armin study status`, in the SQL `trials` view and in the report's reading
    (`armin.reporting.data.load_study`, latest attempt per slot) are the same number;
  - every Optuna trial that is COMPLETE is an armin COMPLETE row (armin writes first, then tells Optuna);
  - once a driver has exited by itself: no row RUNNING, and for a finished study every slot has
    exactly one result, the status is "complete" and Optuna's COMPLETE trials are exactly armin's.
Studies alternate between an ablation and a search; a finished one is checked and the next starts.
Everything runs under a private RAY_TMPDIR, so no other Ray instance on the machine is touched.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from armin.storage.db import connect_readonly, copy_database

KINDS = ("worker", "node", "driver")
RESULT_STATES = ("COMPLETE", "PRUNED", "DIVERGED")
TRIAL_TITLE = "ray::trial_stream"  # a Ray worker's process title while it runs a trial

COMMON = """
goal = "chaos benchmark: exactly-once results under kills"
seed = {seed}
[task]
name = "copy"
max_len = 4
[model]
hidden_size = 8
n_slots = 4
r_size = 4
[optimizer]
name = "rmsprop"
lr = 1e-3
[train]
steps = {steps}
batch_size = 4
eval_every = {eval_every}
eval_sequences = 8
eval_batch_size = 8
[resources]
cpus = 1
gpus = 0
"""
ABLATION = """
[factors]
"model.cell" = ["armin", "lstm"]
[design]
baseline = {{ "model.cell" = "armin" }}
seeds = {seeds}
max_retries = 50
[objective]
metric = "eval_loss"
direction = "minimize"
rope = 0.01
"""
SEARCH = """
[search]
n_trials = {configs}
seeds_per_config = 2
sampler = "random"
sampler_seed = {seed}
pruner = "none"
max_retries = 50
[objective]
metric = "eval_loss"
direction = "minimize"
[space]
"model.cell" = {{ choices = ["armin", "lstm"] }}
"model.addressing" = {{ choices = ["hidden", "input_only"] }}
"""


@dataclass
class Tally:
    rounds: int = 0
    kills: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    studies_finished: int = 0
    finished_kinds: Counter = field(default_factory=Counter)  # "ablation"/"search" -> studies finished
    checks: int = 0


# ---- the database: one snapshot (copy_database), every reading -------------------------------------------------
def violations(db: Path, name: str, *, driver_exited: bool, finished: bool, total: int) -> list[str]:
    """The invariants of one study on one snapshot; each violation is one line naming the study."""
    from armin.reporting.data import load_study
    from armin.reporting.status import study_summary
    from armin.storage import Database

    found: list[str] = []
    con = connect_readonly(db)
    try:
        (study_id, status, kind), = con.execute("SELECT id, status, kind FROM armin_studies WHERE name = ?", (name,))
        rows = con.execute("SELECT config_id, seed, state, optuna_trial_id FROM armin_trials WHERE study_id = ?",
                           (study_id,)).fetchall()
        results = Counter((c, s) for c, s, st, _ in rows if st in RESULT_STATES)
        optuna_complete = set()
        if kind == "search":
            optuna_complete = {r[0] for r in con.execute(
                "SELECT t.trial_id FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name = ? AND t.state = 'COMPLETE'", (name,))}
    finally:
        con.close()
    twice = sorted(k for k, n in results.items() if n > 1)
    if twice:
        found.append(f"{name}: slots with more than one result: {twice}")
    m = re.search(r"results (\d+)/", study_summary(Database.open(db, readonly=True), name))
    in_status = int(m.group(1)) if m else -1
    data = load_study(db, name)
    in_view = int(data.attempts["state"].isin(RESULT_STATES).sum())
    in_report = int(data.final["state"].isin(RESULT_STATES).sum())
    if not in_status == in_view == in_report == sum(results.values()):
        found.append(f"{name}: results disagree: status {in_status}, trials view {in_view}, report {in_report}, "
                     f"rows {sum(results.values())}")
    ours_complete = {o for _, _, st, o in rows if st == "COMPLETE" and o is not None}
    if kind == "search" and not optuna_complete <= ours_complete:
        found.append(f"{name}: Optuna trials COMPLETE that armin does not have: {sorted(optuna_complete - ours_complete)}")
    if driver_exited:
        running = sum(st == "RUNNING" for _, _, st, _ in rows)
        if running:
            found.append(f"{name}: {running} rows RUNNING after the driver exited")
    if finished:
        if len(results) != total or status != "complete":
            found.append(f"{name}: finished with {len(results)}/{total} slots with a result, status {status!r}")
        if kind == "search" and optuna_complete != ours_complete:
            found.append(f"{name}: Optuna COMPLETE {len(optuna_complete)} != armin COMPLETE {len(ours_complete)}")
    return found


# ---- the cluster: our processes only ------------------------------------------------------------
def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def trial_processes(cluster) -> list[int]:
    """Worker processes running a trial, under the raylets of this cluster's worker nodes."""
    pids = []
    for node in cluster.worker_nodes:
        for raylet in node.all_processes.get("raylet", []):
            for pid in children(raylet.process.pid):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                except OSError:
                    continue
                if title.startswith(TRIAL_TITLE):
                    pids.append(pid)
    return pids


def node_running_a_trial(cluster):
    busy = set(trial_processes(cluster))
    for node in cluster.worker_nodes:
        if any(pid in busy for r in node.all_processes.get("raylet", []) for pid in children(r.process.pid)):
            return node
    return None


# ---- the benchmark ------------------------------------------------------------------------------
class Chaos:
    def __init__(self, workdir: Path, *, nodes: int, steps: int, seed: int, log=print):
        from ray.cluster_utils import Cluster

        self.workdir, self.rng, self.steps, self.log = workdir, random.Random(seed), steps, log
        self.db = workdir / "chaos.db"
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(nodes):
            self.cluster.add_node(num_cpus=1)
        self.cluster.wait_for_nodes()
        self.driver: subprocess.Popen | None = None
        self.study: tuple[str, str, int] | None = None  # (name, kind, slots)
        self.n_studies = 0
        self.tally = Tally()

    def close(self) -> None:
        if self.driver is not None and self.driver.poll() is None:
            os.killpg(self.driver.pid, signal.SIGKILL)
            self.driver.wait()
        self.cluster.shutdown()

    def new_study(self) -> None:
        i = self.n_studies
        self.n_studies += 1
        kind = "ablation" if i % 2 == 0 else "search"
        name = f"chaos-{i}-{kind}"
        common = COMMON.format(seed=i, steps=self.steps, eval_every=max(1, self.steps // 4))
        if kind == "ablation":
            tables, total = ABLATION.format(seeds=[100 + i * 10 + k for k in range(3)]), 6
        else:
            tables, total = SEARCH.format(configs=3, seed=i), 6
        text = f'name = "{name}"' + common + tables
        path = self.workdir / f"{name}.toml"
        path.write_text(text)
        self.study = (name, kind, total)
        self.start_driver(["ablation" if kind == "ablation" else "study", "run", str(path)])

    def start_driver(self, args: list[str]) -> None:
        cmd = [sys.executable, "-m", "armin.cli.main", *args, "--db", str(self.db), "--address",
               self.cluster.address, "--quiet"]
        self.driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                       start_new_session=True)

    def resume(self) -> None:
        name, kind, _ = self.study
        self.start_driver(["ablation" if kind == "ablation" else "study", "resume", name])

    def check(self, *, driver_exited: bool, finished: bool) -> None:
        name, _, total = self.study
        with tempfile.TemporaryDirectory() as tmp:
            snap = copy_database(self.db, Path(tmp) / "snap.db")
            found = violations(snap, name, driver_exited=driver_exited, finished=finished, total=total)
        self.tally.checks += 1
        self.tally.violations += found
        for v in found:
            self.log(f"  VIOLATION {v}")

    def driver_done(self) -> bool:
        """True if the driver exited by itself (then checked; a finished study is followed by the next)."""
        if self.driver is None or self.driver.poll() is None:
            return False
        code, err = self.driver.returncode, self.driver.stderr.read()
        self.driver = None
        if code != 0:
            self.tally.violations.append(f"{self.study[0]}: the driver exited {code}: {err.strip()[-300:]}")
            self.log(f"  VIOLATION driver exited {code}: {err.strip()[-300:]}")
        self.check(driver_exited=True, finished=code == 0)
        self.tally.studies_finished += code == 0
        if code == 0:
            self.tally.finished_kinds[self.study[1]] += 1
        self.study = None if code == 0 else self.study
        return True

    def wait_for_trial(self, timeout: float = 180) -> bool:
        """Until a trial runs (True), or the driver finished the study by itself (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.driver_done():
                return False
            if trial_processes(self.cluster):
                return True
            time.sleep(0.2)
        raise RuntimeError("no trial started within the timeout")

    def round(self) -> None:
        if self.study is None:
            self.new_study()
        elif self.driver is None:
            self.resume()
        if not self.wait_for_trial():
            return
        time.sleep(self.rng.uniform(0.0, 1.5))  # somewhere inside a trial
        kind = self.rng.choice(KINDS)
        if kind == "worker":
            pids = trial_processes(self.cluster)
            if not pids:
                return
            os.kill(self.rng.choice(pids), signal.SIGKILL)
        elif kind == "node":
            node = node_running_a_trial(self.cluster)
            if node is None:
                return
            self.cluster.remove_node(node, allow_graceful=False)
            self.cluster.add_node(num_cpus=1)
        else:
            if self.driver is None or self.driver.poll() is not None:
                return
            os.killpg(self.driver.pid, signal.SIGKILL)
            self.driver.wait()
            self.driver = None
        self.tally.rounds += 1
        self.tally.kills[kind] += 1
        self.log(f"round {self.tally.rounds}: killed a {kind} ({self.study[0]})")
        if kind == "driver":
            self.check(driver_exited=False, finished=False)  # its RUNNING rows are the next driver's to mark
        else:
            time.sleep(0.5)
            self.check(driver_exited=False, finished=False)

    def finish(self, timeout: float = 240) -> None:
        """Let the current study run to the end without kills, and check it."""
        if self.study is None:
            return
        self.log(f"finishing {self.study[0]} without kills")
        if self.driver is None:
            self.resume()
        deadline = time.monotonic() + timeout
        while not self.driver_done():
            if time.monotonic() > deadline:  # a hang is a violation too; the driver goes, the tally stays
                os.killpg(self.driver.pid, signal.SIGKILL)
                self.driver.wait()
                self.driver = None
                found = f"{self.study[0]}: did not finish within {timeout:g} s without kills (a hang)"
                self.tally.violations.append(found)
                self.log(f"  VIOLATION {found}")
                self.study = None
                return
            time.sleep(0.5)


def run_chaos(rounds: int, *, nodes: int = 2, steps: int = 300, seed: int = 0, per_study: int = 6,
              log=print) -> Tally:
    """`rounds` kill rounds, at most `per_study` in one study (then it is finished without kills and
    checked, and the next kind starts), then the last study finished; returns the tally."""
    ray_tmp = tempfile.mkdtemp(prefix="ac", dir="/tmp")  # short: Ray's socket paths live under it
    os.environ["RAY_TMPDIR"] = ray_tmp  # our cluster's files (and the address file Cluster.shutdown deletes)
    # A worker SIGKILLed while torch's extension loader holds its build-directory lock leaves the lock
    # behind, and every later load on the machine waits for it forever: our kills get their own
    # extension directory (the machine's build copied there before any kill), never the shared one.
    from armin.model import extension

    if extension.load() is not None:
        extension.copy_build(os.path.join(ray_tmp, "torch_ext"))
    os.environ["TORCH_EXTENSIONS_DIR"] = os.path.join(ray_tmp, "torch_ext")
    try:
        with tempfile.TemporaryDirectory() as work:
            return _rounds(Path(work), rounds, nodes=nodes, steps=steps, seed=seed, per_study=per_study, log=log)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _rounds(work: Path, rounds: int, *, nodes: int, steps: int, seed: int, per_study: int, log) -> Tally:
    chaos = Chaos(work, nodes=nodes, steps=steps, seed=seed, log=log)
    try:
        in_study = 0
        while chaos.tally.rounds < rounds:
            before = chaos.tally.rounds
            chaos.round()
            in_study = 0 if chaos.study is None else in_study + chaos.tally.rounds - before
            if in_study >= per_study:
                chaos.finish()
                in_study = 0
        chaos.finish()
    finally:
        chaos.close()
    return chaos.tally


def bench_chaos(rounds: int, *, nodes: int, steps: int, seed: int, per_study: int, as_json: bool) -> int:
    t0 = time.monotonic()
    tally = run_chaos(rounds, nodes=nodes, steps=steps, seed=seed, per_study=per_study,
                      log=(lambda s: None) if as_json else print)
    out = {"rounds": tally.rounds, "kills": dict(tally.kills), "violations": len(tally.violations),
           "checks": tally.checks, "studies_finished": tally.studies_finished,
           "finished_kinds": dict(tally.finished_kinds),
           "wall_s": round(time.monotonic() - t0, 1), "violation_lines": tally.violations}
    if as_json:
        print(json.dumps(out))
    else:
        kills = ", ".join(f"{k} {tally.kills.get(k, 0)}" for k in KINDS)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(tally.finished_kinds.items()))
        print(f"rounds {tally.rounds} | kills: {kills} | invariant checks {tally.checks} | studies finished "
              f"{tally.studies_finished} ({kinds}) | violations {len(tally.violations)} | {out['wall_s']:.0f} s")
    return 0 if not tally.violations else 1
