"""The Triton backward kernel (armin.model.triton_backward) against fused.py_backward in float64.

py_backward is itself checked against naive.py and gradcheck (test_fused.py); here every gradient the
kernel returns must equal py_backward's from the same saved forward, and one end-to-end run through
autograd is compared with naive_armin. Without a GPU the kernel runs under TRITON_INTERPRET=1 on CPU
tensors (set here before triton is imported); without triton the tests skip, saying so.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
from armin.model import ModelConfig, build_model, fused, gumbel_noise  # noqa: E402
from armin.model import triton_backward, triton_kernel  # noqa: E402
from armin.model.naive import naive_armin  # noqa: E402

pytestmark = pytest.mark.skipif(not triton_kernel.available(), reason=triton_kernel.why_unavailable())
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
T, X, Y, H, N, W = 6, 4, 3, 6, 3, 5  # T > N: slots are overwritten
H200_SHARED_BYTES = 232448  # the most shared memory one block may take on an H200 (sm_90): 227 KB
GRADS = ("d_x", "d_w_x", "d_b_x", "d_w_a", "d_w1", "d_w2", "d_w_v", "d_w_u", "d_w_m", "d_kq", "d_v", "d_h0", "d_c0",
         "d_memory0", "d_prev0", "d_usage0")


@pytest.fixture(scope="module", autouse=True)
def interpreted():
    """Modules imported before TRITON_INTERPRET was set compiled for a GPU: re-import them, kernel first."""
    if DEVICE == "cpu" and triton_kernel.available():
        importlib.reload(triton_kernel)
        importlib.reload(triton_backward)


def _case(overrides: dict, n_written: int, batch: int, dtype=torch.float64, n_slots: int = N):
    """(spec, packed weights, forward inputs, saved, upstream gradients) of a small model from a random state."""
    cfg = ModelConfig(hidden_size=H, n_slots=n_slots, r_size=W, **overrides)
    model = build_model(cfg, X, Y, seed=0).to(dtype)
    gen = torch.Generator().manual_seed(n_written + batch)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    spec, w_x, b_x, w_a, w1, w2, w_v, w_u, w_m, kq, v = fused.pack(model, n_written, 0.7)
    x, h0, mem0 = rand(T, batch, X), rand(batch, H), rand(batch, spec.N, spec.W)
    c0 = None if spec.armin_cell else rand(batch, H)
    noise = None if spec.soft else gumbel_noise((T, batch, spec.N), gen).to(dtype)
    out, _, _, _, saved = fused.py_forward(spec, x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0, mem0,
                                           None, None)
    d_c = None if spec.armin_cell else rand(batch, H)
    upstream = (rand(*out.shape), rand(batch, H), d_c, rand(*mem0.shape), None, None)
    weights = (w_x, w_a, w1, w2, w_v, w_u, w_m, v)
    return spec, saved, x, weights, upstream


def _both(case, device=DEVICE):
    """(triton_backward's gradients, py_backward's) for one case."""
    spec, saved, x, weights, upstream = case
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    got = triton_backward.backward(spec, fused.Saved(*map(to, saved)), to(x), *map(to, weights), *map(to, upstream),
                                   True)
    want = fused.py_backward(spec, saved, x, *weights, *upstream, True)
    return got, want


@pytest.mark.parametrize("overrides, n_written, batch", [
    ({}, 0, 17),  # reference, gumbel, hidden addressing; two programs, the second masked
    ({"read": "soft"}, 0, 5),  # soft writes after the fill (snapshots restored)
    ({"read": "soft", "addressing": "hidden_only"}, 2, 17),  # the memory fills at step 0
    ({"addressing": "input_only"}, 3, 5),  # full from the start: every write replaces the slot read
    ({"formulation": "paper"}, 1, 5),
    ({"formulation": "paper", "read": "soft", "addressing": "input_only"}, 0, 17),
    ({"formulation": "paper", "addressing": "hidden_only"}, 2, 5),
    ({"cell": "lstm"}, 1, 17),  # the LSTM cell over [x, h, r], carrying c
    ({"cell": "lstm", "formulation": "paper", "read": "soft"}, 0, 5),
])
def test_every_gradient_matches_py_backward_in_float64(overrides, n_written, batch):
    got, want = _both(_case(overrides, n_written, batch))
    assert len(got) == len(want) == len(GRADS)
    for name, a, b in zip(GRADS, got, want):
        assert (a is None) == (b is None), name
        if b is not None:
            torch.testing.assert_close(a.cpu(), b, rtol=0, atol=1e-12, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("overrides, n_written", [({"read": "soft"}, 17), ({}, 18)])
def test_memory_passes_over_several_slot_chunks_match_py_backward(overrides, n_written):
    """20 slots: the passes over the whole memory (soft write, soft read, d_y) take two chunks of
    triton_backward.SLOT_CHUNK = 16, the second partly past N; the fill ends within the sequence."""
    assert triton_backward.constants(_case(overrides, n_written, 3, n_slots=20)[0])["CH"] < 20
    got, want = _both(_case(overrides, n_written, 3, n_slots=20))
    for name, a, b in zip(GRADS, got, want):
        if b is not None:
            torch.testing.assert_close(a.cpu(), b, rtol=0, atol=1e-12, msg=lambda m: f"{name}: {m}")


def test_float32_matches_py_backward_in_float32():
    got, want = _both(_case({"read": "soft", "addressing": "hidden_only"}, 1, 17, torch.float32))
    assert got[0].dtype == torch.float32
    for name, a, b in zip(GRADS, got, want):
        if b is not None:
            torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


class _PythonForwardTritonBackward(fused.PythonKernels):
    """The Python forward loop with the Triton backward (fused.TritonKernels pairs it with the Triton forward,
    tests/model/test_triton_kernel.py): the backward alone on the reference loop's saved tensors."""

    backward = staticmethod(lambda *args: triton_backward.backward(*args))


def test_autograd_through_the_triton_backward_matches_naive(monkeypatch):
    cfg = ModelConfig(hidden_size=H, n_slots=N, r_size=W)
    model = build_model(cfg, X, Y, seed=0).double().to(DEVICE)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, 5, X, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_()
    noise = gumbel_noise((T, 5, N), gen).to(DEVICE)
    monkeypatch.setattr(fused, "kernels_for", lambda x, backend="auto", spec=None: _PythonForwardTritonBackward)
    logits = fused.fused_forward(model, x, model.initial_state(5), temperature=0.7, noise=noise, trace=False).logits
    params = dict(model.named_parameters())
    want = naive_armin(cfg, params, x, noise=noise, temperature=0.7)[0]
    target = torch.randn(want.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    wrt = [x, *params.values()]
    got_g = torch.autograd.grad((logits * target).sum(), wrt)
    want_g = torch.autograd.grad((want * target).sum(), wrt)
    for name, a, b in zip(["x", *params], got_g, want_g):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m: f"d/d {name}: {m}")


@pytest.mark.parametrize("overrides, what", [({"addressing": "tardis", "cell": "lstm"}, "TARDIS addressing"),
                                             ({"cell": "tardis"}, "the TARDIS cell")])
def test_tardis_is_refused_in_one_line_naming_it(overrides, what):
    model = build_model(ModelConfig(hidden_size=8, n_slots=N, **overrides), X, Y, seed=0)
    spec = fused.pack(model, 0, 1.0).spec
    assert not triton_backward.covers(spec)
    with pytest.raises(ValueError, match=f"does not cover {what}$"):
        triton_backward.backward(spec, *(None,) * 16, True)


def test_both_kernels_compile_for_an_h200_in_both_halves_of_every_switch():
    """The interpreter runs the kernels as Python; the compiler is stricter (types across runtime branches,
    layouts): compile the backward and the forward (saving or not, with noise or not) for sm_90 without a
    GPU, in a process without TRITON_INTERPRET."""
    script = (
        "import sys\n"
        "from armin.model import ModelConfig, build_model, fused, triton_backward, triton_kernel as tk\n"
        "for over, dtype, flag in [({}, 'fp32', True), (dict(cell='lstm', formulation='paper', read='soft',"
        " addressing='input_only'), 'fp64', False)]:\n"
        f"    model = build_model(ModelConfig(hidden_size={H}, n_slots={N}, r_size={W}, **over), {X}, {Y}, seed=0)\n"
        "    spec = fused.pack(model, 0, 1.0).spec\n"
        "    print(triton_backward.shared_bytes(spec, dtype))\n"
        "    print(tk.shared_bytes(tk._armin_forward, tk.forward_constants(spec, flag, flag), dtype))\n")
    root = str(Path(triton_backward.__file__).parents[2])  # this checkout's armin, not another install's
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    sizes = [int(v) for v in run.stdout.split()]
    assert len(sizes) == 4 and all(0 < v <= H200_SHARED_BYTES for v in sizes), sizes
