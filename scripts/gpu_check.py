"""The Python parts of scripts/gpu_check.sh (issue 11), runnable without Ray and Optuna (PYTHONPATH=.).

  imports               the model / tasks / training / bench.model chain imports with ray and optuna blocked
  float64 --device D    the float64 checks without pytest: fused, graphed and Triton training against naive.py
  trial --device D ...  one copy-task trial (the copy spec's fixed sections, fewer steps); its JSON to --out
  fractional ...        N = 1, 2, 4, 8 trials at once on one device as plain subprocesses: trials/hour
                        and peak memory per trial, and each N's throughput over N = 1's
  triton-warm ...       compile the Triton kernels the grid launches, all at once (one process each)
  merge OUTDIR          the per-cell `bench model --json` files of OUTDIR into one bench.json

Every subcommand writes JSON (to --out or stdout) and exits 0 when it ran, 1 when a check failed.
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY_SPEC = ROOT / "studies" / "copy_gpu.toml"
BLOCKED = ("ray", "optuna")  # not on the GPU machine
CHAIN = ("armin.model", "armin.model.graphs", "armin.model.triton_kernel", "armin.tasks", "armin.training.trainer",
         "armin.bench.model", "armin.cli.bench")


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the GPU machine has no {name.split('.')[0]}")
        return None


def check_imports(modules: tuple[str, ...] = CHAIN) -> dict:
    """Import `modules` in a fresh interpreter with BLOCKED modules made unimportable."""
    code = ("import importlib, sys; sys.path.insert(0, %r); from gpu_check import _Block; "
            "sys.meta_path.insert(0, _Block()); [importlib.import_module(m) for m in %r]") % (
        str(Path(__file__).parent), modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    err = out.stderr.strip().splitlines()
    return {"ok": out.returncode == 0, "modules": list(modules), "blocked": list(BLOCKED),
            "error": err[-1] if err and out.returncode else None}


TINY_MODEL = {"hidden_size": 8, "n_slots": 4, "r_size": 4}  # --tiny: the CPU test of the script


def copy_run(device: str, steps: int, seed: int, tiny: bool = False):
    """The copy spec's fixed task, model, optimizer and train sections, with `steps` steps on `device`."""
    from armin.config import from_mapping
    from armin.training import RunConfig

    spec = tomllib.loads(COPY_SPEC.read_text())
    train = spec["train"] | {"steps": steps, "eval_every": steps, "device": device, "eval_sequences": 64,
                             "eval_batch_size": 64}
    model = spec["model"] | (TINY_MODEL if tiny else {})
    return from_mapping(RunConfig, {"task": spec["task"], "model": model, "optimizer": spec["optimizer"],
                                    "train": train, "seed": seed}, "copy spec")


def run_trial(device: str, steps: int, seed: int, tiny: bool = False) -> dict:
    import torch

    from armin.model.fused import cuda_kernels
    from armin.training import train

    start = time.perf_counter()
    result = train(copy_run(device, steps, seed, tiny))
    out = {"seed": seed, "status": result.status, "steps": result.steps_done, "wall_s": time.perf_counter() - start,
           "time_per_step_s": result.time_per_step_s, "step_peak_bytes": result.peak_memory_bytes,
           "device": result.device, "cuda_kernels": cuda_kernels()}
    if device.startswith("cuda"):
        out["process_peak_bytes"] = torch.cuda.max_memory_allocated(torch.device(device))
    return out


def _why_failed(p: subprocess.Popen, err: str) -> str:
    """A failed subprocess stage's reason: the last line of its stderr (the exception), else its exit code."""
    return err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}"


def fractional(device: str, counts: list[int], steps: int, tiny: bool = False) -> dict:
    """N trials at once as subprocesses; trials/hour from the wall time until the last one ends."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    rows = []
    for n in counts:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "trial", "--device", device, "--steps", str(steps),
                                   "--seed", str(k)] + (["--tiny"] if tiny else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=ROOT) for k in range(n)]
        outs = [p.communicate() for p in procs]
        wall = time.perf_counter() - start
        failed = [_why_failed(p, err) for p, (_, err) in zip(procs, outs) if p.returncode]
        trials = [json.loads(o) for p, (o, _) in zip(procs, outs) if p.returncode == 0]
        rows.append({"trials_at_once": n, "wall_s": wall, "trials_per_hour": 3600 * len(trials) / wall,
                     # the same without interpreter start and imports (what workers kept alive, as Ray's, pay)
                     "trials_per_hour_in_train": 3600 * len(trials) / max(t["wall_s"] for t in trials) if trials
                     else 0.0,
                     "failed": failed, "trials": trials,
                     "peak_bytes_per_trial": max((t.get("process_peak_bytes") or t["step_peak_bytes"] or 0)
                                                 for t in trials) if trials else None})
    base = rows[0]["trials_per_hour"] if rows and rows[0]["trials_at_once"] == 1 else None
    base_in = rows[0]["trials_per_hour_in_train"] if base else None
    for r in rows:
        r["throughput_vs_one"] = r["trials_per_hour"] / base if base else None
        r["throughput_in_train_vs_one"] = r["trials_per_hour_in_train"] / base_in if base_in else None
    four = next((r for r in rows if r["trials_at_once"] == 4), None)
    target = {"four_at_once_vs_one": four["throughput_vs_one"], "bound": 3.0,
              "ok": four["throughput_vs_one"] is not None and four["throughput_vs_one"] >= 3.0} if four else None
    return {"device": device, "steps": steps, "spec": str(COPY_SPEC.relative_to(ROOT)), "rows": rows,
            "target_issue_11": target, "ok": all(not r["failed"] for r in rows)}


FLOAT64_CONFIGS = ({}, {"formulation": "paper"}, {"cell": "lstm"}, {"addressing": "tardis", "cell": "tardis"},
                   {"read": "soft"})


def float64_checks(device: str, configs=FLOAT64_CONFIGS, triton_configs=None, sink=None) -> dict:
    """Fused (Python loop on `device`), graphed and (if importable) Triton ARMIN against naive.py, float64.

    `configs` / `triton_configs` (default: all) let the CPU test run a few: the code path is the same.
    `sink(partial_result)` is called after each configuration, so a stage cut by its time limit keeps
    what it checked."""
    import torch

    from armin.model import ModelConfig, build_model, gumbel_noise
    from armin.model.graphs import GraphedPass, capture_cuda, capture_eager
    from armin.model.naive import naive_armin

    dev = torch.device(device)
    checks = []
    for overrides in configs:
        cfg = ModelConfig(hidden_size=16, n_slots=4, r_size=4, **overrides)
        model = build_model(cfg, 5, 3, seed=0).to(dev, torch.float64)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(9, 3, 5, generator=gen, dtype=torch.float64)
        noise = gumbel_noise((9, 3, cfg.n_slots), gen, cfg.gate_noise_width)
        noise = noise if cfg.read == "gumbel" else None
        params = dict(model.named_parameters())
        ref_params = {k: p.detach().cpu().clone().requires_grad_() for k, p in params.items()}
        want = naive_armin(cfg, ref_params, x, noise=noise, temperature=0.7)[0]
        want.square().mean().backward()

        def fn(_key, xx, *nz):
            loss = model(xx, temperature=0.7, noise=nz[0] if nz else None).logits.square().mean()
            loss.backward()
            return (loss.detach(),)

        inputs = (x.to(dev),) + (() if noise is None else (noise.to(dev),))
        for path in ("fused", "graphed"):
            for p in params.values():
                p.grad = None
            if path == "fused":
                loss = fn(None, *inputs)[0]
            else:
                gp = GraphedPass(fn, list(params.values()), capture=capture_cuda if dev.type == "cuda" else capture_eager)
                loss = gp(*inputs)[0]
            err = max([abs(loss.item() - want.square().mean().item())] +
                      [float((p.grad.cpu() - ref_params[k].grad).abs().max()) for k, p in params.items()])
            checks.append({"config": overrides or "default", "path": path, "max_abs_err": err, "ok": err < 1e-9})
        if sink is not None:
            sink({"device": device, "checks": checks, "ok": False, "partial": True})
    checks += triton_checks(dev, TRITON_CONFIGS if triton_configs is None else triton_configs)
    return {"device": device, "checks": checks, "ok": all(c["ok"] for c in checks)}


TRITON_CONFIGS = ({}, {"formulation": "paper", "read": "soft"}, {"addressing": "input_only"}, {"cell": "lstm"},
                  {"cell": "lstm", "formulation": "paper", "read": "soft"})


def triton_checks(dev, configs=TRITON_CONFIGS) -> list[dict]:
    """Training through the Triton kernels (model.kernels = "triton") against naive.py in float64: logits,
    reads and every parameter's gradient, at a batch spanning two programs; or why it was skipped."""
    import torch

    from armin.errors import described
    from armin.model import ModelConfig, build_model, fused, gumbel_noise, triton_kernel
    from armin.model.naive import naive_armin

    if not triton_kernel.available():
        return [{"path": "triton", "ok": True, "skipped": triton_kernel.why_unavailable()}]
    out = []
    for overrides in configs:
        cfg = ModelConfig(hidden_size=16, n_slots=4, r_size=4, **overrides)
        model = build_model(cfg, 5, 3, seed=0).double()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(9, 19, 5, generator=gen, dtype=torch.float64)
        noise = gumbel_noise((9, 19, cfg.n_slots), gen) if cfg.read == "gumbel" else None
        params = dict(model.named_parameters())
        want, want_y = naive_armin(cfg, params, x, noise=noise, temperature=0.7)
        want_g = torch.autograd.grad(want.square().mean(), list(params.values()), allow_unused=True)
        model = model.to(dev)
        model.kernels = "triton"
        xd = x.to(dev)
        try:
            chosen = fused.kernels_for(xd, "triton", fused.pack(model, 0, 0.7).spec).name
            got = model(xd, temperature=0.7, noise=None if noise is None else noise.to(dev), trace=True)
            got_g = torch.autograd.grad(got.logits.square().mean(), list(model.parameters()), allow_unused=True)
        except Exception as e:  # noqa: BLE001 - a kernel that does not build here is this check's result
            out.append({"config": overrides or "default", "path": "triton", "ok": False, "error": described(e)})
            continue
        zero = lambda g, p: torch.zeros_like(p.detach().cpu()) if g is None else g.cpu()  # noqa: E731
        err = max([float((got.logits.cpu() - want).abs().max()), float((got.reads.cpu() - want_y).abs().max())]
                  + [float((zero(a, p) - zero(b, p)).abs().max()) for a, b, p in zip(got_g, want_g, params.values())])
        out.append({"config": overrides or "default", "path": "triton", "kernels": chosen, "max_abs_err": err,
                    "ok": err < 1e-9 and chosen == "triton"})
    return out


WARM_SHAPE = (17, 32)  # (T, B) of the warm-up passes: the grid's divisibility classes (T % 16 != 0, B % 16 == 0)


def triton_warm(device: str, hidden: int, only: int | None = None) -> dict:
    """Compile every Triton kernel the benchmark grid launches before the grid runs: one process per
    (formulation x cell, warps) at once, each running a train and an infer pass through the Triton
    kernels, so the grid's cells find them in Triton's on-disk cache instead of compiling for minutes
    inside a cell's time limit (a compile of the backward at H=100 takes 1-2 min on one core). `only`: the
    first that many jobs (the CPU test)."""
    from armin.bench.model import TRITON_WARPS, VARIANTS

    jobs = [(f, c, w) for i, (f, c) in enumerate(VARIANTS) for w in (TRITON_WARPS if i == 0 else TRITON_WARPS[:1])]
    jobs = jobs[:only]
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "triton-warm-one", "--device", device, "--hidden", str(hidden),
                               "--formulation", f, "--cell", c, "--warps", str(w)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for f, c, w in jobs]
    rows = []
    for (f, c, w), p in zip(jobs, procs):
        out, err = p.communicate()
        rows.append({"variant": f"{f}/{c}", "warps": w, "rc": p.returncode,
                     "seconds": json.loads(out)["seconds"] if p.returncode == 0 else None,
                     "error": _why_failed(p, err) if p.returncode else None})
    return {"device": device, "hidden": hidden, "shape": WARM_SHAPE, "jobs": rows,
            "wall_s": time.perf_counter() - start, "ok": all(r["rc"] == 0 for r in rows)}


def triton_warm_one(device: str, hidden: int, formulation: str, cell: str, warps: int) -> dict:
    """One train pass (forward saving, backward; Gumbel noise) and one infer pass of the bench's model."""
    import torch

    from armin.bench.model import INPUT_SIZE, OUTPUT_SIZE, armin_config
    from armin.model import build_model, triton_kernel

    start = time.perf_counter()
    triton_kernel.NUM_WARPS = warps
    model = build_model(armin_config(formulation, cell, hidden), INPUT_SIZE, OUTPUT_SIZE, seed=0).to(device)
    model.kernels = "triton"
    x = torch.randn(*WARM_SHAPE, INPUT_SIZE, device=device)
    model.train()
    model(x, generator=torch.Generator().manual_seed(0)).logits.square().mean().backward()
    model.eval()
    with torch.no_grad():
        model(x)
    return {"seconds": time.perf_counter() - start}


def merge(outdir: Path) -> dict:
    """bench_*.json (one `bench model --json` per cell) as one result: the first file's environment, all rows."""
    parts = [json.loads(p.read_text()) for p in sorted(outdir.glob("bench_B*_T*.json")) if p.stat().st_size]
    if not parts:
        return {"ok": False, "error": f"no bench_B*_T*.json with content in {outdir}"}
    merged = {k: v for k, v in parts[0].items() if k not in ("rows", "targets")}
    merged["rows"] = [r for p in parts for r in p["rows"]]
    merged["targets"] = [t for p in parts for t in p["targets"]]
    merged["ok"] = True
    return merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("imports")
    f = sub.add_parser("float64")
    f.add_argument("--device", default="cuda")
    t = sub.add_parser("trial")
    t.add_argument("--device", default="cuda")
    t.add_argument("--steps", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--tiny", action="store_true", help="a tiny model (the CPU test)")
    r = sub.add_parser("fractional")
    r.add_argument("--device", default="cuda")
    r.add_argument("--trials", default="1,2,4,8")
    r.add_argument("--steps", type=int, default=200)
    r.add_argument("--tiny", action="store_true", help="a tiny model (the CPU test)")
    w = sub.add_parser("triton-warm")
    w.add_argument("--device", default="cuda")
    w.add_argument("--hidden", type=int, default=100)
    w1 = sub.add_parser("triton-warm-one")
    w1.add_argument("--device", default="cuda")
    w1.add_argument("--hidden", type=int, default=100)
    w1.add_argument("--formulation", required=True)
    w1.add_argument("--cell", required=True)
    w1.add_argument("--warps", type=int, default=4)
    m = sub.add_parser("merge")
    m.add_argument("outdir", type=Path)
    for p in (f, r, m, w, sub.choices["imports"]):
        p.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "trial":
        print(json.dumps(run_trial(args.device, args.steps, args.seed, args.tiny)))
        return 0
    if args.cmd == "triton-warm-one":
        print(json.dumps(triton_warm_one(args.device, args.hidden, args.formulation, args.cell, args.warps)))
        return 0
    def write(result: dict) -> None:
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")

    result = {"imports": lambda: check_imports(),
              "float64": lambda: float64_checks(args.device, sink=write),
              "fractional": lambda: fractional(args.device, [int(n) for n in args.trials.split(",")], args.steps,
                                               args.tiny),
              "triton-warm": lambda: triton_warm(args.device, args.hidden),
              "merge": lambda: merge(args.outdir)}[args.cmd]()
    if args.out:
        write(result)
    else:
        print(json.dumps(result, indent=2))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
