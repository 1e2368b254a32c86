"""The fused whole-sequence path (armin.model.fused) against the naive float64 reference.

Both loop implementations are checked: the C++ one (fused.cpp, CPU) and the Python one (every other
device). The C++ extension is compiled once per machine and loaded once per test session.
"""

import itertools

import pytest
import torch

from armin.model import ModelConfig, build_model, extension, fused, gumbel_noise
from armin.model.fused import FusedSequence, PythonKernels, Spec, fused_forward
from armin.model.naive import naive_armin

X, Y, B = 5, 3, 3
FUSED_VARIANTS = list(itertools.product(["reference", "paper"], ["hidden", "hidden_only", "input_only", "tardis"],
                                        ["armin", "lstm", "tardis"], ["gumbel", "soft"]))


@pytest.fixture(scope="session")
def cpp_available() -> bool:
    return extension.load() is not None


@pytest.fixture(params=["cpp", "python"])
def backend(request, cpp_available) -> str:
    if request.param == "cpp" and not cpp_available:
        pytest.skip(f"C++ extension: {extension.status()}")
    return request.param


def small(formulation="reference", addressing="hidden", cell="armin", read="gumbel", **kw) -> ModelConfig:
    return ModelConfig(formulation=formulation, addressing=addressing, cell=cell, read=read,
                       hidden_size=8, n_slots=4, r_size=6, key_size=3, **kw)


def perturbed(cfg: ModelConfig) -> torch.nn.Module:
    """A float64 model whose zero-initialised biases and memory_init are moved off zero."""
    model = build_model(cfg, X, Y, seed=3).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=p.dtype))
    return model


def close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("formulation,addressing,cell,read", FUSED_VARIANTS)
def test_fused_matches_naive_outputs_reads_and_every_gradient(backend, formulation, addressing, cell, read):
    _check_against_naive(backend, small(formulation, addressing, cell, read))


@pytest.mark.parametrize("cell,read", [("lstm", "gumbel"), ("tardis", "soft")])
def test_fused_tardis_addressing_from_h_matches_naive(backend, cell, read):
    """address_state = "h": the scorer reads h instead of the cell state c."""
    _check_against_naive(backend, small("reference", "tardis", cell, read, address_state="h"))


def _check_against_naive(backend, cfg):
    model = perturbed(cfg)
    T = 11  # longer than n_slots: the filling and the overwrite regime
    x = torch.randn(T, B, X, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    noise = gumbel_noise((T, B, cfg.n_slots), torch.Generator().manual_seed(2), cfg.gate_noise_width) \
        if cfg.read == "gumbel" else None
    out = fused_forward(model, x, model.initial_state(B), temperature=0.7, noise=noise, trace=True, backend=backend)
    params = dict(model.named_parameters())
    ref_logits, ref_reads = naive_armin(cfg, params, x, noise=noise, temperature=0.7)
    close(out.logits, ref_logits, "logits")
    close(out.reads, ref_reads, "reads (trace=True)")
    target = torch.randn_like(ref_logits)
    wrt = [x, *params.values()]
    g_fused = torch.autograd.grad((out.logits * target).sum(), wrt)
    g_ref = torch.autograd.grad((ref_logits * target).sum(), wrt)
    for name, a, b in zip(["x", *params], g_fused, g_ref):
        close(a, b, f"d/d {name}")


@pytest.mark.parametrize("formulation,addressing,cell,read", [
    *itertools.product(["reference", "paper"], ["hidden"], ["armin", "lstm"], ["gumbel", "soft"]),
    *itertools.product(["reference"], ["tardis"], ["armin", "lstm", "tardis"], ["gumbel", "soft"])])
def test_truncated_bptt_carry_passes_values_and_gradients_through_the_state(backend, formulation, addressing, cell,
                                                                             read):
    """Two segments chained through `state` (not detached) equal one naive pass, gradients included (TARDIS:
    prev_read and usage are carried too)."""
    cfg = small(formulation, addressing, cell=cell, read=read)
    model = perturbed(cfg)
    T, cut = 10, 6  # the cut falls after the memory is full (n_slots = 4)
    x = torch.randn(T, B, X, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    noise = gumbel_noise((T, B, cfg.n_slots), torch.Generator().manual_seed(5), cfg.gate_noise_width) \
        if read == "gumbel" else None
    seg = lambda a, b: None if noise is None else noise[a:b]  # noqa: E731
    first = fused_forward(model, x[:cut], model.initial_state(B), temperature=0.9, noise=seg(0, cut), trace=True,
                          backend=backend)
    assert first.state.n_written == cfg.n_slots and first.state.memory.requires_grad
    assert (first.state.usage is not None) == (addressing == "tardis")
    second = fused_forward(model, x[cut:], first.state, temperature=0.9, noise=seg(cut, T), trace=True,
                           backend=backend)
    params = dict(model.named_parameters())
    ref_logits, ref_reads = naive_armin(cfg, params, x, noise=noise, temperature=0.9)
    close(torch.cat([first.logits, second.logits]), ref_logits, "logits")
    close(torch.cat([first.reads, second.reads]), ref_reads, "reads")
    # a loss on the second segment only reaches state_init / memory_init through the carried state
    target = torch.randn_like(second.logits)
    g = torch.autograd.grad((second.logits * target).sum(), list(params.values()))
    g_ref = torch.autograd.grad((ref_logits[cut:] * target).sum(), list(params.values()))
    for name, a, b in zip(params, g, g_ref):
        close(a, b, f"d/d {name}")


def test_detached_carry_cuts_the_graph_and_keeps_the_values(backend):
    cfg = small()
    model = perturbed(cfg)
    x = torch.randn(9, B, X, dtype=torch.float64)
    noise = gumbel_noise((9, B, cfg.n_slots), torch.Generator().manual_seed(0))
    whole = fused_forward(model, x, model.initial_state(B), temperature=1.0, noise=noise, trace=False,
                          backend=backend).logits
    first = fused_forward(model, x[:5], model.initial_state(B), temperature=1.0, noise=noise[:5], trace=False,
                          backend=backend)
    second = fused_forward(model, x[5:], first.state.detach(), temperature=1.0, noise=noise[5:], trace=False,
                           backend=backend)
    close(torch.cat([first.logits, second.logits]), whole, "logits")
    (g,) = torch.autograd.grad(second.logits.sum(), model.state_init, allow_unused=True)
    assert g is None


def test_gradients_reach_an_incoming_state_that_requires_grad(backend):
    """h0, c0 and memory0 as leaves: the fused gradients equal the eager step loop's."""
    for cell, addressing in (("armin", "hidden"), ("lstm", "hidden"), ("tardis", "tardis"), ("armin", "tardis")):
        cfg = small(addressing=addressing, cell=cell, read="soft")
        model = perturbed(cfg)
        x = torch.randn(6, B, X, dtype=torch.float64)
        s0 = model.initial_state(B)
        leaves = {"h": s0.h.detach().clone().requires_grad_(), "memory": s0.memory.detach().clone().requires_grad_()}
        if cell != "armin":
            leaves["c"] = s0.c.detach().clone().requires_grad_()
        if addressing == "tardis":  # a usage with non-zero norm, as after a first segment
            leaves["prev_read"] = torch.softmax(torch.randn(B, cfg.n_slots, dtype=torch.float64), 1).requires_grad_()
            leaves["usage"] = (2 * leaves["prev_read"].detach()).requires_grad_()
        from dataclasses import replace
        s = replace(s0, **leaves)
        loss = lambda o: (o.logits.square().sum() + o.state.h.sum() + o.state.memory.sin().sum()  # noqa: E731
                          + (0 if o.state.usage is None else (o.state.usage.cos().sum() + o.state.prev_read.sin().sum())))
        g = torch.autograd.grad(loss(fused_forward(model, x, s, temperature=1.0, noise=None, trace=False,
                                                   backend=backend)), list(leaves.values()))
        model.impl = "eager"
        g_ref = torch.autograd.grad(loss(model(x, s)), list(leaves.values()))
        for name, a, b in zip(leaves, g, g_ref):
            close(a, b, f"{cell}: d/d {name}0")


@pytest.mark.parametrize("formulation,cell,addressing", [
    *itertools.product(["reference", "paper"], ["armin", "lstm", "tardis"], ["hidden", "input_only"]),
    *itertools.product(["reference", "paper"], ["armin", "lstm", "tardis"], ["tardis"]),
    ("reference", "lstm", "tardis(h)")])
def test_fused_function_gradcheck_with_soft_reads(backend, formulation, cell, addressing):
    """gradcheck of FusedSequence itself, every input differentiable. Soft reads make it smooth; T <= n_slots
    because the soft write index after the memory is full is detached by design (§4.4). TARDIS: the incoming
    usage has a non-zero norm (as after a first segment) so that normalize(usage) is smooth."""
    H, N, W, Xs, Bs, T = 3, 4, 2 if formulation == "reference" else 3, 2, 2, 4
    armin_cell, tardis_cell, U = cell == "armin", cell == "tardis", 2 if addressing.startswith("tardis") else 0
    K1 = {"armin": H + W, "lstm": 4 * H, "tardis": 3 * H + 2}[cell]
    K2 = {"armin": 4 * H + W, "lstm": 0, "tardis": H}[cell]
    s = Spec(H=H, N=N, W=W, K1=K1, K2=K2, reference=formulation == "reference", armin_cell=armin_cell, soft=True,
             address_h=addressing != "input_only", n_written=0, temperature=0.8, forget_bias=1.0,
             tardis_cell=tardis_cell, U=U, address_c=addressing == "tardis" and not armin_cell)
    K = s.offsets[3]
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()  # noqa: E731
    prob = lambda: torch.softmax(torch.randn(Bs, N, generator=g, dtype=torch.float64), 1)  # noqa: E731
    tardis = [r(U, N), r(U, W), r(N, U), r(U)] if U else [None] * 4
    inputs = [r(T, Bs, Xs), r(K, Xs), r(K), r(s.A, H) if s.address_h else None, r(K1, H + W),
              r(K2, H + W) if K2 else None, r(W, H) if s.reference else None, *tardis, r(Bs, H),
              None if armin_cell else r(Bs, H), r(Bs, N, W), prob().requires_grad_() if U else None,
              (1 + prob()).requires_grad_() if U else None]
    kernels = PythonKernels if backend == "python" else extension.CppKernels

    def fn(*args):
        outs = FusedSequence.apply(s, kernels, True, *args[:3], None, *args[3:])
        return tuple(o for i, o in enumerate(outs) if i != 1 and o is not None)  # all but y

    assert torch.autograd.gradcheck(fn, tuple(inputs))


def test_batch_rows_split_across_threads_give_the_same_result(cpp_available):
    """The C++ loop runs chunks of batch rows in parallel: any thread count, same numbers as Python."""
    if not cpp_available:
        pytest.skip(f"C++ extension: {extension.status()}")
    threads = torch.get_num_threads()
    try:
        for addressing, cell, read in (("hidden", "armin", "gumbel"), ("hidden", "armin", "soft"),
                                       ("tardis", "tardis", "gumbel"), ("tardis", "armin", "soft")):
            cfg = small(addressing=addressing, cell=cell, read=read)
            model = perturbed(cfg)
            Bb, T = 27, 9
            x = torch.randn(T, Bb, X, dtype=torch.float64, requires_grad=True)
            noise = gumbel_noise((T, Bb, cfg.n_slots), torch.Generator().manual_seed(0), cfg.gate_noise_width)
            results = []
            for backend, n in (("python", 1), ("cpp", 1), ("cpp", 3)):
                torch.set_num_threads(n)
                out = fused_forward(model, x, model.initial_state(Bb), temperature=1.0,
                                    noise=noise if read == "gumbel" else None, trace=True, backend=backend)
                grads = torch.autograd.grad(out.logits.sin().sum() + out.state.memory.sum(),
                                            [x, *model.parameters()])
                results.append([out.logits, out.reads, *grads])
            for other in results[1:]:
                for a, b in zip(results[0], other):
                    close(a, b, f"{read}")
    finally:
        torch.set_num_threads(threads)


def test_float32_fused_agrees_with_the_eager_loop():
    """float32 uses the fast vectorised exp/tanh in C++: close to the eager path, not bitwise."""
    for cfg in (ModelConfig(hidden_size=32, n_slots=10, r_size=12),
                ModelConfig(hidden_size=32, n_slots=10, r_size=12, addressing="tardis", cell="tardis")):
        _float32_agrees(cfg)


def _float32_agrees(cfg):
    model = build_model(cfg, X, Y, seed=0)
    x = torch.randn(25, 8, X)
    noise = gumbel_noise((25, 8, cfg.n_slots), torch.Generator().manual_seed(0), cfg.gate_noise_width)
    results = {}
    for impl in ("fused", "eager"):
        model.impl = impl
        out = model(x, noise=noise)
        results[impl] = [out.logits, *torch.autograd.grad(out.logits.square().mean(), list(model.parameters()))]
    for a, b in zip(results["fused"], results["eager"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("addressing,cell", [("hidden", "armin"), ("tardis", "tardis"), ("tardis", "lstm")])
def test_inference_without_grad_equals_the_training_forward(backend, addressing, cell):
    cfg = small(addressing=addressing, cell=cell)
    model = perturbed(cfg)
    x = torch.randn(8, B, X, dtype=torch.float64)
    noise = gumbel_noise((8, B, cfg.n_slots), torch.Generator().manual_seed(0), cfg.gate_noise_width)
    run = lambda: fused_forward(model, x, model.initial_state(B), temperature=1.0, noise=noise,  # noqa: E731
                                trace=True, backend=backend)
    with_grad = run()
    with torch.no_grad():
        without = run()
    close(without.logits, with_grad.logits.detach(), "logits")
    close(without.state.memory, with_grad.state.memory.detach(), "memory")
    if addressing == "tardis":
        close(without.state.usage, with_grad.state.usage.detach(), "usage")


def test_fused_is_the_default_and_eager_stays_available():
    model = build_model(ModelConfig(), X, Y, seed=0)
    assert model.impl == "fused"
    assert all(fused.supports(small(*v)) for v in FUSED_VARIANTS)
    with pytest.raises(ValueError, match="impl"):
        type(model)(ModelConfig(), X, Y, impl="compiled")


def test_every_model_switch_value_is_on_the_allow_list_or_runs_eager():
    """The allow-list names every value of every ModelConfig switch it covers; each value today is on it
    (arch = "lstm" is the separate memory-less baseline, nn.LSTM's kernel, not this loop)."""
    import typing

    hints = typing.get_type_hints(ModelConfig)
    for name, allowed in fused.FUSED_SUPPORT.items():
        expected = set(typing.get_args(hints[name])) - ({"lstm"} if name == "arch" else set())
        assert expected == set(allowed), name


def test_a_variant_off_the_allow_list_runs_eager_with_the_same_result(monkeypatch):
    """A value the fused loop does not list (here: the tardis cell, taken off) runs the eager step loop: no
    KeyError, same numbers, and `unsupported` names the setting."""
    cfg = small("reference", "tardis", "tardis", "gumbel")
    model = perturbed(cfg)
    x = torch.randn(7, B, X, dtype=torch.float64)
    noise = gumbel_noise((7, B, cfg.n_slots), torch.Generator().manual_seed(0), cfg.gate_noise_width)
    fused_out = model(x, noise=noise).logits
    monkeypatch.setitem(fused.FUSED_SUPPORT, "cell", ("armin", "lstm"))
    assert fused.unsupported(cfg) == ["cell='tardis'"] and not fused.supports(cfg)

    def refuse(*args, **kwargs):
        raise AssertionError("fused_forward called for a configuration off the allow-list")

    monkeypatch.setattr(fused, "fused_forward", refuse)
    close(model(x, noise=noise).logits, fused_out, "logits (eager under impl='fused')")


def test_impl_is_an_execution_switch_not_an_ablation():
    """Same parameters, same noise: eager and fused agree (float64), so `impl` changes speed only."""
    cfg = small()
    model = perturbed(cfg)
    x = torch.randn(7, B, X, dtype=torch.float64)
    noise = gumbel_noise((7, B, cfg.n_slots), torch.Generator().manual_seed(0))
    fused_out = model(x, noise=noise, trace=True)
    model.impl = "eager"
    eager_out = model(x, noise=noise, trace=True)
    close(fused_out.logits, eager_out.logits, "logits")
    close(fused_out.reads, eager_out.reads, "reads")
    close(fused_out.state.memory, eager_out.state.memory, "memory")


def test_disabled_extension_falls_back_to_the_python_loop(monkeypatch):
    monkeypatch.setattr(extension, "_module", None)
    monkeypatch.setattr(extension, "_status", "not loaded yet")
    monkeypatch.setenv(extension.DISABLE_ENV, "0")
    assert extension.load() is None and "disabled" in extension.status()
    x = torch.randn(3, 2, X)
    assert fused.kernels_for(x) is PythonKernels
    with pytest.raises(RuntimeError, match="unavailable"):
        fused.kernels_for(x, "cpp")
    model = build_model(small(), X, Y, seed=0)
    assert torch.isfinite(model(x).logits).all()


def test_backward_twice_with_retain_graph_gives_the_same_gradients(backend):
    """The backward loop restores memory from saved tensors without modifying them."""
    cfg = small(read="soft")
    model = perturbed(cfg)
    x = torch.randn(9, B, X, dtype=torch.float64)
    out = fused_forward(model, x, model.initial_state(B), temperature=1.0, noise=None, trace=False, backend=backend)
    loss = out.logits.square().sum()
    first = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(model.parameters()))
    for a, b in zip(first, second):
        assert torch.equal(a, b)
