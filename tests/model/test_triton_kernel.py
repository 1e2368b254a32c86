"""The Triton forward kernel (armin.model.triton_kernel) against naive.py and the Python loop in float64:
outputs, reads, state, every saved tensor the backward uses, and gradients through `fused.TritonKernels`.

Without a GPU it runs under TRITON_INTERPRET=1 on CPU tensors (set here before triton is imported);
without triton the tests skip, saying so.
"""

import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
from armin.errors import ConfigError  # noqa: E402
from armin.model import ModelConfig, build_model, fused, gumbel_noise  # noqa: E402
from armin.model import triton_kernel  # noqa: E402
from armin.model.naive import naive_armin  # noqa: E402

pytestmark = pytest.mark.skipif(not triton_kernel.available(), reason=triton_kernel.why_unavailable())
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
X, Y, T = 4, 3, 6  # T = 6 > N = 3: slots are overwritten too

CASES = [  # (model overrides, batch, steps already written)
    ({}, 5, 0),  # reference, gumbel, hidden addressing
    ({"formulation": "paper", "read": "soft", "addressing": "hidden_only"}, 5, 0),
    ({"addressing": "input_only", "read": "soft"}, 17, 0),  # two programs, the second masked
    ({"read": "soft"}, 3, 2),  # a later segment: one fill step, then soft writes
    ({"cell": "lstm"}, 5, 0),
    ({"cell": "lstm", "formulation": "paper", "read": "soft"}, 3, 1),
]


@pytest.fixture(scope="module", autouse=True)
def interpreted():
    """A triton_kernel imported before TRITON_INTERPRET was set compiled for a GPU: re-import it."""
    if DEVICE == "cpu" and triton_kernel.available():
        importlib.reload(triton_kernel)


def setup(overrides, batch, n_written, seed=0, n_slots=3):
    cfg = ModelConfig(hidden_size=12, n_slots=n_slots, r_size=5, **overrides)
    model = build_model(cfg, X, Y, seed=seed).double()
    with torch.no_grad():  # biases and learned inits off zero, so every term is exercised
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7), dtype=p.dtype))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, batch, X, generator=gen, dtype=torch.float64)
    noise = gumbel_noise((T, batch, cfg.n_slots), gen) if cfg.read == "gumbel" else None
    state = model.initial_state(batch)
    if n_written:  # a first segment, so this one starts with n_written slots filled and a non-reset state
        state = model(torch.randn(n_written, batch, X, generator=gen, dtype=torch.float64), state,
                      noise=None if noise is None else noise[:n_written]).state.detach()
    return cfg, model.to(DEVICE), x.to(DEVICE), None if noise is None else noise.to(DEVICE), state


@pytest.mark.parametrize("overrides, batch, n_written", CASES)
def test_the_saved_tensors_equal_the_python_loops(overrides, batch, n_written):
    _assert_saved_tensors_equal_the_python_loops(*setup(overrides, batch, n_written))


def test_soft_passes_over_several_slot_chunks_equal_the_python_loops():
    """20 slots: the soft read and write pass over the memory in two chunks of triton_kernel.SLOT_CHUNK = 16,
    the second partly past N; 17 slots written before, so the fill ends within the sequence."""
    setup_ = setup({"read": "soft"}, 3, 17, n_slots=20)
    assert triton_kernel.chunk(fused.pack(setup_[1], 17, 0.7).spec) < 20
    _assert_saved_tensors_equal_the_python_loops(*setup_)


def _assert_saved_tensors_equal_the_python_loops(cfg, model, x, noise, state):
    spec, *w = fused.pack(model, state.n_written, 0.7)
    assert triton_kernel.covers(spec)
    args = (spec, x, *w[:2], noise, *w[2:], state.h, state.c, state.memory, state.prev_read, state.usage, True)
    with torch.no_grad():
        want = fused.py_forward(*args[:-1])
        got = triton_kernel.sequence_forward(*args)
    for i, name in enumerate(("out", "y", "h", "c")):
        if want[i] is None:
            assert got[i] is None, name
        else:
            assert torch.allclose(got[i], want[i], rtol=0, atol=1e-12), name
    for name, a, b in zip(want[4]._fields, got[4], want[4]):
        assert a.shape == b.shape, f"saved {name}: {tuple(a.shape)} != {tuple(b.shape)}"
        assert (torch.equal(a, b) if name == "idx" else torch.allclose(a, b, rtol=0, atol=1e-12)), f"saved {name}"


@pytest.mark.parametrize("overrides, batch", [(o, b) for o, b, _ in (CASES[0], CASES[1], CASES[4], CASES[5])])
def test_training_through_the_triton_kernels_matches_naive(overrides, batch):
    """Logits, reads and every parameter's gradient: model.kernels = "triton" (Triton forward, the
    backward on its saved tensors) against naive.py's autograd, from a fresh reset."""
    cfg, model, x, noise, _ = setup(overrides, batch, 0)
    params = dict(model.named_parameters())
    want, want_y = naive_armin(cfg, params, x, noise=noise, temperature=0.7)
    want_g = torch.autograd.grad(want.square().sum(), list(params.values()), allow_unused=True)
    model.kernels = "triton"
    model.train()
    got = model(x, temperature=0.7, noise=noise, trace=True)
    assert fused.kernels_for(x, "triton", fused.pack(model, 0, 0.7).spec) is fused.TritonKernels
    assert torch.allclose(got.logits, want, rtol=0, atol=1e-12)
    assert torch.allclose(got.reads, want_y, rtol=0, atol=1e-12)
    got_g = torch.autograd.grad(got.logits.square().sum(), list(params.values()), allow_unused=True)
    for name, a, b in zip(params, got_g, want_g):
        a = torch.zeros_like(params[name]) if a is None else a
        b = torch.zeros_like(params[name]) if b is None else b
        assert torch.allclose(a, b, rtol=0, atol=1e-10), name


def test_calls_off_its_list_are_refused_in_one_line(monkeypatch):
    model = build_model(ModelConfig(hidden_size=8, n_slots=3, cell="tardis", addressing="tardis"), X, Y, seed=0)
    x = torch.zeros(2, 1, X, device=DEVICE)
    spec = fused.pack(model, 0, 1.0).spec
    assert not triton_kernel.covers(spec)
    with pytest.raises(RuntimeError, match="unavailable here: TARDIS addressing$"):
        fused.kernels_for(x, "triton", spec)
    model.kernels = "triton"
    with pytest.raises(RuntimeError, match="TARDIS"):
        model(x)
    if DEVICE == "cpu":  # no GPU and no interpreter: the reason, not a Triton stack trace
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        assert "need a CUDA device" in triton_kernel.runs_on(x)


def test_auto_picks_triton_only_on_cuda_and_only_when_asked(monkeypatch):
    x = torch.zeros(2, 1, X)
    spec = fused.pack(build_model(ModelConfig(hidden_size=8, n_slots=3), X, Y, seed=0), 0, 1.0).spec
    monkeypatch.setenv(fused.CUDA_KERNELS_ENV, "triton")
    assert fused.kernels_for(x, "auto", spec) is not fused.TritonKernels  # a CPU tensor: the C++ or Python loop
    monkeypatch.setenv(fused.CUDA_KERNELS_ENV, "cudnn")
    with pytest.raises(ConfigError, match="^ARMIN_CUDA_KERNELS='cudnn': expected one of python, triton$"):
        fused.cuda_kernels()
    monkeypatch.delenv(fused.CUDA_KERNELS_ENV)
    assert fused.cuda_kernels() == "python"


def test_the_benchmarks_triton_contenders_and_issue_11s_targets(monkeypatch):
    """`armin bench model`'s Triton rows (on a GPU by default; here forced, interpreted): each formulation
    x cell (here two of the four, to keep it short), the default at 8 warps too, their speedup over the
    fused path, and the targets' fastest path."""
    from armin.bench import model as bench
    from armin.bench.model import Row, bench_model, targets

    VARIANTS = (("reference", "armin"), ("paper", "lstm"))
    monkeypatch.setattr(bench, "VARIANTS", VARIANTS)
    monkeypatch.setattr(bench, "MEMORY_VARIANTS", {})

    result = bench_model((2,), (5,), hidden=8, modes=("train", "infer"), repeats=1, warmup=0, naive=False,
                         as_json=True, eager=False, triton=True, device=DEVICE)
    rows = {r["name"]: r for r in result["rows"]}
    want = {f"triton {f}/{c}" for f, c in VARIANTS} | {"triton reference/armin w8"}
    assert {n for n in rows if n.startswith("triton")} == want
    for name in want:
        r = rows[name]
        fused = rows[f"armin {r['variant']}"]["us_per_step"]["train"]
        assert r["kind"] == "triton" and all(v > 0 for v in r["us_per_step"].values())
        assert abs(r["ratios"]["triton speedup"] - fused / r["us_per_step"]["train"]) < 1e-9
    (t,) = targets([Row(**r) for r in result["rows"]], 8, gpu=True)
    paths = {"armin": rows["armin reference/armin"], "triton": rows["triton reference/armin"],
             "triton w8": rows["triton reference/armin w8"]}
    best = min(paths, key=lambda k: paths[k]["us_per_step"]["train"])
    assert t["gpu_path"] == best and t["gpu_us_per_step"] == paths[best]["us_per_step"]["train"]
