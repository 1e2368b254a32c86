"""`armin bench model`: fast ARMIN against nn.LSTM and the naive reference, in one process, interleaved.

(`armin bench model --spec SPEC` profiles a spec's arms instead: `armin.bench.arms`, the study's cost profile.)

For every (batch, sequence length) of the grid it times, round-robin (the starting contender
rotating every round) so that machine noise hits every contender alike:
  armin   the model as built by `build_model` (fused path), each formulation x cell, and the TARDIS
          family (MEMORY_VARIANTS: AwTA, the authors' TARDIS, the LSTM cell with TARDIS addressing)
  eager   the same model with `impl = "eager"` (the step loop), for ARMIN and each TARDIS-family model
  naive   `armin.model.naive.naive_armin` on the same parameters, each formulation x cell
  lstm    `torch.nn.LSTM` + linear head at the same hidden size and at 3x it
  graphed on CUDA, the default fused ARMIN with its train and infer passes replayed as CUDA graphs
          (`armin.model.graphs`; issue 11's step 2a; its targets are the default model's)
  triton  on CUDA with Triton, each formulation x cell with `kernels = "triton"` (the Triton forward
          kernel, one launch per sequence, and its backward; issue 11's step 2b), and the default
          ARMIN's at 8 warps per program too ("w8"); issue 11's targets take the fastest GPU path
in three modes:
  train   forward + backward of logits.square().mean() (Gumbel noise drawn inside, as training does)
  infer   forward under no_grad in eval mode
  step    one full training step: zero_grad, forward, backward, Adam step
and reports the median time per sequence step, the peak memory of one train pass (CPU: allocator
events recorded by the profiler; CUDA: max_memory_allocated; for a graphed model its first pass,
capture and graph pool included), and ratios to the baselines. Every timing is bracketed by
torch.cuda.synchronize on a GPU. Inputs and outputs have the copy task's widths (X = 10, Y = 8); float32.
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from armin.costs.measure import peak_tensor_bytes, sync
from armin.costs.warm import prepare
from armin.errors import described
from armin.model import ModelConfig, build_model, gumbel_noise
from armin.model.graphs import Capture, GraphedPass, capture_cuda
from armin.model.naive import naive_armin

INPUT_SIZE, OUTPUT_SIZE = 10, 8  # the copy task with 8-bit words
MODES = ("train", "infer", "step")
VARIANTS = (("reference", "armin"), ("paper", "armin"), ("reference", "lstm"), ("paper", "lstm"))
#: The paper's other memory networks, each on the reference formulation: name -> ModelConfig overrides.
MEMORY_VARIANTS = {"awta": {"addressing": "tardis"}, "tardis": {"addressing": "tardis", "cell": "tardis"},
                   "lstm+tardis-addressing": {"addressing": "tardis", "cell": "lstm"}}
TARGET_EAGER_SPEEDUP = 5.0  # issue 10: every memory variant's eager loop over its fused path, at least
TARGET_AWTA_VS_ARMIN = 1.5  # issue 10: AwTA's fused train time over ARMIN's, at most
TARGET_VS_LSTM = 1.5  # issue 10: ARMIN's train time over nn.LSTM(H), at most
TARGET_VS_WIDE_LSTM_FUSED = 0.35  # issue 10: ARMIN's train time over nn.LSTM(3H), at most
ADAM_LR = 1e-3
LSTM_WIDE = 3  # the wide LSTM baseline's hidden size, as a multiple of ARMIN's
TARGET_VS_WIDE_LSTM = 0.5  # ARMIN train time / nn.LSTM(3H) train time must be at most this
TARGET_VS_NAIVE = 5.0  # naive train time / ARMIN train time must be at least this
GRIDS = {"cpu": ((1, 32), (100, 1000)), "cuda": ((32, 256), (100, 1000))}  # default (batches, seq_lens)
GPU_VS_LSTM = 1.0  # issue 11: ARMIN's train time over cuDNN nn.LSTM(H), at most (B=32, T=1000)
GPU_VS_WIDE_LSTM = {32: 0.5, 256: 1.0}  # issue 11: over nn.LSTM(3H), at most, by batch (other batches: B=32's)
GPU_STRETCH_US = 6.0  # issue 11's stretch: microseconds per train step (B=32, T=1000)


@dataclass
class Row:
    batch: int
    seq_len: int
    name: str
    kind: str  # armin | eager | naive | lstm | graphed | triton
    variant: str  # formulation/cell for the memory models, "" for the LSTMs
    us_per_step: dict[str, float] = field(default_factory=dict)  # mode -> median microseconds per step
    peak_train_mib: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)  # train time over each baseline's
    error: str | None = None  # the contender raised (a kernel that does not build on this GPU): why, one line


class Contender:
    """One model behind a uniform call: logits (T, B, Y) for inputs (T, B, X)."""

    def __init__(self, name: str, kind: str, variant: str, module: torch.nn.Module,
                 run: Callable[[torch.Tensor, bool, torch.Generator], torch.Tensor], graphs: "Graphed | None" = None):
        self.name, self.kind, self.variant, self.module, self.run = name, kind, variant, module, run
        self.params = [p for p in module.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=ADAM_LR)
        self.graphs = graphs  # train and infer passes replayed as graphs, instead of `run`


class Graphed:
    """A fused model's train pass (forward, loss, backward) and infer pass as `GraphedPass`es, its
    Gumbel noise drawn from the generator as `ARMIN.forward` draws it."""

    def __init__(self, model, capture: Capture):
        self.model, self.capture = model, capture
        self.reset()

    def reset(self) -> None:
        """Drop every capture (the next pass captures afresh)."""
        self.train = GraphedPass(self._train, list(self.model.parameters()), capture=self.capture)
        self.infer = GraphedPass(self._infer, [], capture=self.capture)

    def _train(self, _key, x, *noise):
        self.model.train()
        loss = self.model(x, noise=noise[0] if noise else None).logits.square().mean()
        loss.backward()
        return (loss.detach(),)

    def _infer(self, _key, x):
        self.model.eval()
        with torch.no_grad():
            return (self.model(x).logits,)

    def train_pass(self, x: torch.Tensor, gen: torch.Generator) -> None:
        m = self.model
        if m.cfg.read == "gumbel":  # training draws noise (ARMIN.noisy)
            self.train(x, gumbel_noise((*x.shape[:2], m.sizes[2]), gen, m.cfg.gate_noise_width).to(x))
        else:
            self.train(x)


def armin_config(formulation: str, cell: str, hidden: int) -> ModelConfig:
    return ModelConfig(formulation=formulation, cell=cell, hidden_size=hidden)


TRITON_WARPS = (4, 8)  # the Triton kernel's warps per program timed for the default variant (the first: all)


def make_contenders(hidden: int, device: torch.device, naive: bool = True, graphs: Capture | None = None,
                    eager: bool = True, triton: bool = False, tardis: bool = True) -> list[Contender]:
    """The grid's models; with `graphs` (on CUDA: capture_cuda) the default ARMIN graphed too; with
    `triton` each formulation x cell through the Triton kernels; without `tardis`, no MEMORY_VARIANTS."""
    out = []
    configs = [(f"{f}/{c}", armin_config(f, c, hidden)) for f, c in VARIANTS]
    configs += [(name, ModelConfig(hidden_size=hidden, **overrides)) for name, overrides in MEMORY_VARIANTS.items()
                if tardis]
    for variant, cfg in configs:
        model = build_model(cfg, INPUT_SIZE, OUTPUT_SIZE, seed=0).to(device)
        out.append(Contender(f"armin {variant}", "armin", variant, model, _model_run(model)))
        if triton and variant not in MEMORY_VARIANTS:
            for warps in TRITON_WARPS if variant == "/".join(VARIANTS[0]) else TRITON_WARPS[:1]:
                twin = build_model(cfg, INPUT_SIZE, OUTPUT_SIZE, seed=0).to(device)
                twin.kernels = "triton"
                suffix = "" if warps == TRITON_WARPS[0] else f" w{warps}"
                out.append(Contender(f"triton {variant}{suffix}", "triton", variant, twin, _triton_run(twin, warps)))
        if graphs is not None and variant == "/".join(VARIANTS[0]):
            twin = build_model(cfg, INPUT_SIZE, OUTPUT_SIZE, seed=0).to(device)
            out.append(Contender(f"graphed {variant}", "graphed", variant, twin, _model_run(twin),
                                 Graphed(twin, graphs)))
        if eager and (variant == "/".join(VARIANTS[0]) or variant in MEMORY_VARIANTS):
            eager_model = build_model(cfg, INPUT_SIZE, OUTPUT_SIZE, seed=0).to(device)
            eager_model.impl = "eager"
            out.append(Contender(f"eager {variant}", "eager", variant, eager_model, _model_run(eager_model)))
        if naive:
            ref = build_model(cfg, INPUT_SIZE, OUTPUT_SIZE, seed=0).to(device)
            out.append(Contender(f"naive {variant}", "naive", variant, ref, _naive_run(cfg, ref)))
    for h in (hidden, LSTM_WIDE * hidden):
        lstm = torch.nn.ModuleDict({"rnn": torch.nn.LSTM(INPUT_SIZE, h), "head": torch.nn.Linear(h, OUTPUT_SIZE)})
        out.append(Contender(f"nn.LSTM H={h}", "lstm", "", lstm.to(device), _lstm_run(lstm)))
    return out


def _model_run(model):
    def run(x, train, gen):
        model.train(train)
        return model(x, generator=gen).logits
    return run


def _triton_run(model, warps: int):
    """`_model_run`'s call with the Triton kernels' warps per program set first (a launch setting)."""
    from armin.model import triton_kernel

    run = _model_run(model)

    def with_warps(x, train, gen):
        triton_kernel.NUM_WARPS = warps
        return run(x, train, gen)
    return with_warps


def _naive_run(cfg: ModelConfig, model):
    params = dict(model.named_parameters())

    def run(x, train, gen):  # noise only in training, as the model (eval_noise = False)
        width = cfg.n_slots + (2 if cfg.cell == "tardis" else 0)  # the tardis cell's two gates take noise too
        noise = gumbel_noise((x.shape[0], x.shape[1], width), gen).to(x) if train else None
        if x.device.type == "cpu":
            return naive_armin(cfg, params, x, noise=noise, temperature=1.0)[0]
        with x.device:  # naive_armin makes its zero state on the default device (a mode: slow, so not on CPU)
            return naive_armin(cfg, params, x, noise=noise, temperature=1.0)[0]
    return run


def _lstm_run(lstm):
    def run(x, train, gen):
        return lstm["head"](lstm["rnn"](x)[0])
    return run


# ---- measuring ---------------------------------------------------------------------------------
def once(c: Contender, mode: str, x: torch.Tensor, gen: torch.Generator) -> float:
    """Seconds for one pass of `mode`."""
    device = x.device
    if mode != "step":
        c.opt.zero_grad(set_to_none=True)
    sync(device)
    start = time.perf_counter()
    if mode == "infer":
        if c.graphs is not None:
            c.graphs.infer(x)
        else:
            with torch.no_grad():
                c.run(x, False, gen)
    else:
        if mode == "step":
            c.opt.zero_grad(set_to_none=True)
        if c.graphs is not None:
            c.graphs.train_pass(x, gen)
        else:
            c.run(x, True, gen).square().mean().backward()
        if mode == "step":
            c.opt.step()
    sync(device)
    return time.perf_counter() - start


def peak_train_bytes(c: Contender, x: torch.Tensor, gen: torch.Generator) -> int:
    """Peak tensor bytes allocated during one train pass, above what was allocated before it (graphed:
    the first pass after dropping the captures, so the warm-up runs, the capture and its pool count)."""
    c.opt.zero_grad(set_to_none=True)
    if c.graphs is not None:
        c.graphs.reset()
        return peak_tensor_bytes(lambda: c.graphs.train_pass(x, gen), x.device)[0]
    return peak_tensor_bytes(lambda: c.run(x, True, gen).square().mean().backward(), x.device)[0]


def bench_cell(contenders: list[Contender], batch: int, seq_len: int, modes: Sequence[str], repeats: int,
               warmup: int, device: torch.device, progress: Callable[[str], None] | None = None) -> list[Row]:
    """Every contender and mode at one (batch, seq_len), interleaved round by round."""
    x = torch.randn(seq_len, batch, INPUT_SIZE, generator=torch.Generator().manual_seed(0)).to(device)
    gen = torch.Generator().manual_seed(1)
    times: dict[tuple[str, str], list[float]] = {(c.name, m): [] for c in contenders for m in modes}
    failed: dict[str, str] = {}  # contender -> why it stopped (it is left out of later rounds)
    for r in range(warmup + repeats):
        for mode in modes:
            k = r % len(contenders)  # rotate who goes first: no contender always follows the same one
            for c in contenders[k:] + contenders[:k]:
                if c.name in failed:
                    continue
                try:
                    dt = once(c, mode, x, gen)
                except Exception as e:  # noqa: BLE001 - one contender's failure must not lose the others' times
                    failed[c.name] = f"{mode}: {described(e)}"
                    continue
                if r >= warmup:
                    times[(c.name, mode)].append(dt)
        if progress is not None:
            progress(f"B={batch} T={seq_len}: round {r + 1}/{warmup + repeats}")
    rows = []
    for c in contenders:
        if c.name in failed:
            rows.append(Row(batch, seq_len, c.name, c.kind, c.variant, error=failed[c.name]))
            continue
        row = Row(batch, seq_len, c.name, c.kind, c.variant,
                  {m: 1e6 * statistics.median(times[(c.name, m)]) / seq_len for m in modes})
        if "train" in modes:
            row.peak_train_mib = peak_train_bytes(c, x, gen) / 2**20
        rows.append(row)
    add_ratios(rows)
    return rows


def add_ratios(rows: list[Row]) -> None:
    """Train time of each memory model over: nn.LSTM(H), nn.LSTM(3H), and its naive twin."""
    by_name = {r.name: r for r in rows if r.error is None}
    lstms = sorted((r for r in by_name.values() if r.kind == "lstm"), key=lambda r: int(r.name.split("=")[1]))
    for r in rows:
        t = r.us_per_step.get("train")
        if t is None or r.kind == "lstm":
            continue
        for l in lstms:
            r.ratios[f"vs {l.name}"] = t / l.us_per_step["train"]
        naive = by_name.get(f"naive {r.variant}")
        if naive is not None and r.kind != "naive":
            r.ratios["naive speedup"] = naive.us_per_step["train"] / t
        eager = by_name.get(f"eager {r.variant}")
        if eager is not None and r.kind in ("armin", "graphed"):
            r.ratios["eager speedup"] = eager.us_per_step["train"] / t
        fused = by_name.get(f"armin {r.variant}")
        if fused is not None and r.kind == "graphed":
            r.ratios["graph speedup"] = fused.us_per_step["train"] / t
        if fused is not None and r.kind == "triton":
            r.ratios["triton speedup"] = fused.us_per_step["train"] / t


# ---- reporting ----------------------------------------------------------------------------------
def environment(device: torch.device) -> dict:
    from armin.model import extension

    loop = f"C++ ({extension.status()})" if device.type == "cpu" and prepare()["status"].startswith("built") else "Python"
    env = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "device": str(device), "fused_loop": loop,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if device.type == "cuda":
        env |= {"gpu": torch.cuda.get_device_name(device), "driver": gpu_driver(), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version()}
    return env


def gpu_driver() -> str:
    """The NVIDIA driver's version (nvidia-smi), or why it is unknown."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({type(e).__name__})"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"


def format_cell(rows: list[Row], modes: Sequence[str]) -> str:
    head = f"{'model':<26}" + "".join(f"{m + ' us/step':>16}" for m in modes) + f"{'peak train MiB':>16}"
    ratio_keys = [k for k in rows[0].ratios] if rows and rows[0].ratios else []
    for r in rows:
        ratio_keys += [k for k in r.ratios if k not in ratio_keys]
    head += "".join(f"{k:>20}" for k in ratio_keys)
    lines = [f"batch {rows[0].batch}, seq_len {rows[0].seq_len}", head]
    for r in rows:
        if r.error is not None:
            lines.append(f"{r.name:<26}failed: {r.error}")
            continue
        line = f"{r.name:<26}" + "".join(f"{r.us_per_step[m]:>16.1f}" for m in modes)
        line += f"{r.peak_train_mib:>16.2f}" if r.peak_train_mib is not None else f"{'-':>16}"
        line += "".join(f"{r.ratios[k]:>19.3f}x" if k in r.ratios else f"{'':>20}" for k in ratio_keys)
        lines.append(line)
    return "\n".join(lines)


def targets(rows: list[Row], hidden: int, gpu: bool = False) -> list[dict]:
    """The issues' targets for the default configuration at each (batch, seq_len) measured (`gpu`: issue 11's too)."""
    out = []
    for armin in (r for r in rows if r.name == f"armin {VARIANTS[0][0]}/{VARIANTS[0][1]}" and "train" in r.us_per_step):
        same = {r.name: r for r in rows if (r.batch, r.seq_len) == (armin.batch, armin.seq_len) and r.error is None}
        wide = same.get(f"nn.LSTM H={LSTM_WIDE * hidden}")
        naive = same.get(f"naive {armin.variant}")
        t = {"batch": armin.batch, "seq_len": armin.seq_len}
        if wide is not None:
            t["train_vs_wide_lstm"] = armin.us_per_step["train"] / wide.us_per_step["train"]
            t["train_vs_wide_lstm_ok"] = t["train_vs_wide_lstm"] <= TARGET_VS_WIDE_LSTM
            if armin.peak_train_mib is not None:
                t["peak_below_wide_lstm"] = armin.peak_train_mib < wide.peak_train_mib
        if naive is not None:
            t["naive_speedup"] = naive.us_per_step["train"] / armin.us_per_step["train"]
            t["naive_speedup_ok"] = t["naive_speedup"] >= TARGET_VS_NAIVE
        t.update(fused_targets(same, armin, hidden))
        if gpu:
            t.update(gpu_targets(same, armin, hidden))
        out.append(t)
    return out


def fused_targets(same: dict[str, Row], armin: Row, hidden: int) -> dict:
    """Issue 10's targets: every memory variant's fused path against its eager loop, AwTA against ARMIN,
    ARMIN against nn.LSTM at H and 3H (train, forward+backward)."""
    t: dict = {}
    speedups = {name.removeprefix("armin "): r.ratios["eager speedup"] for name, r in same.items()
                if r.kind == "armin" and "eager speedup" in r.ratios}
    if speedups:
        t["eager_speedup"] = speedups
        t["eager_speedup_ok"] = min(speedups.values()) >= TARGET_EAGER_SPEEDUP
    awta = same.get("armin awta")
    if awta is not None:
        t["awta_vs_armin"] = awta.us_per_step["train"] / armin.us_per_step["train"]
        t["awta_vs_armin_ok"] = t["awta_vs_armin"] <= TARGET_AWTA_VS_ARMIN
    for key, name, bound in (("vs_lstm", f"nn.LSTM H={hidden}", TARGET_VS_LSTM),
                             ("vs_wide_lstm_fused", f"nn.LSTM H={LSTM_WIDE * hidden}", TARGET_VS_WIDE_LSTM_FUSED)):
        if name in same:
            t[key] = armin.us_per_step["train"] / same[name].us_per_step["train"]
            t[f"{key}_ok"] = t[key] <= bound
    return t


def gpu_targets(same: dict[str, Row], armin: Row, hidden: int) -> dict:
    """Issue 11's targets (set for B=32 T=1000 and B=256; reported for every cell): the fastest GPU path
    of the default ARMIN (fused, graphed, Triton at each warp count) against cuDNN's nn.LSTM at H and 3H,
    and the stretch in us per step."""
    paths = [r for r in same.values() if r.variant == armin.variant and r.kind in ("armin", "graphed", "triton")
             and "train" in r.us_per_step]
    best = min(paths, key=lambda r: r.us_per_step["train"])
    us = best.us_per_step["train"]
    t: dict = {"gpu_path": best.name.removesuffix(f" {armin.variant}").replace(f" {armin.variant} ", " "),
               "gpu_us_per_step": us, "gpu_us_per_step_ok": us <= GPU_STRETCH_US}
    for key, name, bound in (("gpu_vs_lstm", f"nn.LSTM H={hidden}", GPU_VS_LSTM),
                             ("gpu_vs_wide_lstm", f"nn.LSTM H={LSTM_WIDE * hidden}",
                              GPU_VS_WIDE_LSTM.get(armin.batch, GPU_VS_WIDE_LSTM[32]))):
        if name in same:
            t[key] = us / same[name].us_per_step["train"]
            t[f"{key}_bound"] = bound
            t[f"{key}_ok"] = t[key] <= bound
    return t


def format_targets(ts: list[dict], hidden: int) -> str:
    """Each (batch, seq_len): the older targets' line, then issue 10's, each value with its bound and verdict."""
    wide = f"nn.LSTM H={LSTM_WIDE * hidden}"
    older = [("train_vs_wide_lstm", lambda t: f"{t['train_vs_wide_lstm']:.3f}x {wide}", f"<= {TARGET_VS_WIDE_LSTM}"),
             ("peak_below_wide_lstm", lambda t: "peak memory below it", None),
             ("naive_speedup", lambda t: f"{t['naive_speedup']:.1f}x faster than naive", f">= {TARGET_VS_NAIVE:g}")]
    fused = [("eager_speedup", lambda t: "fused over eager " + ", ".join(
                 f"{name} {x:.1f}x" for name, x in t["eager_speedup"].items()), f"each >= {TARGET_EAGER_SPEEDUP:g}"),
             ("awta_vs_armin", lambda t: f"AwTA {t['awta_vs_armin']:.2f}x ARMIN", f"<= {TARGET_AWTA_VS_ARMIN:g}"),
             ("vs_lstm", lambda t: f"{t['vs_lstm']:.2f}x nn.LSTM H={hidden}", f"<= {TARGET_VS_LSTM:g}"),
             ("vs_wide_lstm_fused", lambda t: f"{t['vs_wide_lstm_fused']:.3f}x {wide}",
              f"<= {TARGET_VS_WIDE_LSTM_FUSED:g}")]
    gpu = [("gpu_vs_lstm", lambda t: f"{t['gpu_path']} {t['gpu_vs_lstm']:.2f}x nn.LSTM H={hidden}",
            f"<= {GPU_VS_LSTM:g}"),
           ("gpu_vs_wide_lstm", lambda t: f"{t['gpu_vs_wide_lstm']:.2f}x {wide}",
            "<= " + ", ".join(f"{b:g} at B={n}" for n, b in GPU_VS_WIDE_LSTM.items())),
           ("gpu_us_per_step", lambda t: f"{t['gpu_us_per_step']:.1f} us/step", f"stretch <= {GPU_STRETCH_US:g}")]
    lines = [f"targets (armin {VARIANTS[0][0]}/{VARIANTS[0][1]}, H={hidden}, train = forward+backward; "
             f"issue 6 sets them for B=32 T=100, issue 11 for B=32 T=1000 and B=256; other cells are for "
             f"information):"]
    for t in ts:
        lines.append(f"  B={t['batch']} T={t['seq_len']}: " + ", ".join(_verdicts(t, older)))
        lines.append("    issue 10: " + ("; ".join(_verdicts(t, fused)) or "not measured"))
        if "gpu_us_per_step" in t:
            lines.append("    issue 11: " + "; ".join(_verdicts(t, gpu)))
    return "\n".join(lines)


def _verdicts(t: dict, items) -> list[str]:
    """`value (bound: met|MISSED)` for each target `t` has; a boolean target (no bound) is its own verdict."""
    out = []
    for key, text, bound in items:
        if key in t:
            ok = t[key] if bound is None else t[f"{key}_ok"]
            out.append(f"{text(t)}{'' if bound is None else ' (' + bound}{':' if bound is None else ':'} "
                       f"{'met' if ok else 'MISSED'}{'' if bound is None else ')'}")
    return out


def triton_ready(device: torch.device) -> bool:
    """Whether the Triton contenders run by default: on a GPU, where triton imports."""
    from armin.model import triton_kernel

    return device.type == "cuda" and triton_kernel.available()


def bench_model(batches: Sequence[int] | None = None, seq_lens: Sequence[int] | None = None, *, hidden: int = 100,
                modes: Sequence[str] = MODES, repeats: int = 5, warmup: int = 1, device: str = "cpu",
                threads: int | None = None, naive: bool = True, as_json: bool = False,
                graphs: Capture | None = None, eager: bool = True, triton: bool | None = None,
                tardis: bool = True) -> dict:
    """Run the grid (default: GRIDS for the device), print a table per (batch, seq_len) (or JSON),
    return everything as a dict. On CUDA the graphed twins run (`graphs`, default capture_cuda), and the
    Triton ones where triton imports (`triton`, default: then)."""
    dev = torch.device(device)
    grid = GRIDS["cuda" if dev.type == "cuda" else "cpu"]
    batches, seq_lens = batches or grid[0], seq_lens or grid[1]
    if threads is not None:
        torch.set_num_threads(threads)
    if graphs is None and dev.type == "cuda":
        graphs = capture_cuda
    contenders = make_contenders(hidden, dev, naive, graphs, eager, triton=triton_ready(dev)
                                 if triton is None else triton, tardis=tardis)
    env = environment(dev)
    if not as_json:
        print("  ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    rows: list[Row] = []
    for batch in batches:
        for seq_len in seq_lens:
            cell = bench_cell(contenders, batch, seq_len, modes, repeats, warmup, dev)
            rows += cell
            if not as_json:
                print("\n" + format_cell(cell, modes), flush=True)
    result = {"environment": env, "hidden": hidden, "repeats": repeats, "warmup": warmup, "modes": list(modes),
              "rows": [asdict(r) for r in rows], "targets": targets(rows, hidden, gpu=dev.type == "cuda")}
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print("\n" + format_targets(result["targets"], hidden))
    return result
