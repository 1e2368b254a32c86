"""The model against the plain float64 transcription in `armin.model.naive`: same weights, same noise."""

import itertools

import pytest
import torch

from armin.model import ModelConfig, build_model, gumbel_noise
from armin.model.naive import naive_armin, naive_lstm

X, Y, B = 5, 3, 3
VARIANTS = list(itertools.product(["reference", "paper"], ["hidden", "hidden_only", "input_only", "tardis"],
                                  ["armin", "lstm", "tardis"], ["gumbel", "soft"]))


def small(formulation, addressing, cell, read, **kw):
    return ModelConfig(formulation=formulation, addressing=addressing, cell=cell, read=read,
                       hidden_size=8, n_slots=4, r_size=6, key_size=3, **kw)


def grads(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("impl", ["fused", "eager"])  # fused: the default
@pytest.mark.parametrize("formulation,addressing,cell,read", VARIANTS)
def test_outputs_and_gradients_match_naive_reference(formulation, addressing, cell, read, impl):
    cfg = small(formulation, addressing, cell, read)
    model = build_model(cfg, X, Y, seed=3).double()
    model.impl = impl
    # memory_init and biases start at zero: perturb them so the test sees every path
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=p.dtype))
    T = 11  # longer than n_slots: covers both the filling and the overwrite regime
    x = torch.randn(T, B, X, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    noise = gumbel_noise((T, B, cfg.n_slots), torch.Generator().manual_seed(2), cfg.gate_noise_width)
    temperature = 0.7
    out = model(x, noise=noise, temperature=temperature, trace=True)
    params = dict(model.named_parameters())
    ref_logits, ref_reads = naive_armin(cfg, params, x, noise=noise if read == "gumbel" else None,
                                        temperature=temperature)
    torch.testing.assert_close(out.logits, ref_logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.reads, ref_reads, rtol=1e-10, atol=1e-12)
    target = torch.randn_like(ref_logits)
    names = list(params)
    g_model = grads((out.logits * target).sum(), [params[n] for n in names])
    g_ref = grads((ref_logits * target).sum(), [params[n] for n in names])
    for n, a, b in zip(names, g_model, g_ref):
        assert a is not None and b is not None, n
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m: f"{n}: {m}")


def test_plain_lstm_matches_naive_reference():
    cfg = ModelConfig(arch="lstm", hidden_size=7)
    model = build_model(cfg, X, Y, seed=0).double()
    x = torch.randn(9, B, X, dtype=torch.float64)
    params = dict(model.named_parameters())
    out = model(x).logits
    ref = naive_lstm(cfg, params, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = grads(out.square().sum(), list(params.values()))
    g_ref = grads(ref.square().sum(), list(params.values()))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_hard_read_is_one_hot_and_gradient_is_straight_through():
    cfg = small("reference", "hidden", "armin", "gumbel")
    model = build_model(cfg, X, Y, seed=0).double()
    logits = torch.randn(B, cfg.n_slots, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(B, cfg.n_slots, dtype=torch.float64)
    w, y = model.read_address(logits, 0.5, noise)
    assert torch.equal(w.detach().sum(1), torch.ones(B, dtype=torch.float64))
    assert set(w.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(w.detach().argmax(1), (logits + noise).argmax(1))
    v = torch.randn(B, cfg.n_slots, dtype=torch.float64)
    (gw,) = torch.autograd.grad((w * v).sum(), logits)
    (gy,) = torch.autograd.grad((torch.softmax((logits + noise) / 0.5, 1) * v).sum(), logits)
    torch.testing.assert_close(gw, gy)  # the gradient of the soft distribution, not of the one-hot


def test_eval_without_noise_is_deterministic_and_uses_argmax():
    cfg = small("reference", "hidden", "armin", "gumbel")
    model = build_model(cfg, X, Y, seed=0).eval()
    x = torch.randn(7, B, X)
    a = model(x, generator=torch.Generator().manual_seed(0)).logits
    b = model(x, generator=torch.Generator().manual_seed(1)).logits
    assert torch.equal(a, b)
    noisy = build_model(small("reference", "hidden", "armin", "gumbel", eval_noise=True), X, Y, seed=0).eval()
    c = noisy(x, generator=torch.Generator().manual_seed(0)).logits
    d = noisy(x, generator=torch.Generator().manual_seed(1)).logits
    assert not torch.equal(c, d)


def test_truncated_bptt_carry_equals_one_pass_and_detach_cuts_the_graph():
    cfg = small("reference", "hidden", "armin", "gumbel")
    model = build_model(cfg, X, Y, seed=0).double()
    x = torch.randn(10, B, X, dtype=torch.float64)
    noise = gumbel_noise((10, B, cfg.n_slots), torch.Generator().manual_seed(0))
    whole = model(x, noise=noise).logits
    first = model(x[:6], noise=noise[:6])
    carried = first.state.detach()
    assert carried.n_written == 4 and not carried.memory.requires_grad and not carried.h.requires_grad
    second = model(x[6:], carried, noise=noise[6:])
    torch.testing.assert_close(torch.cat([first.logits, second.logits]), whole)
    # no gradient crosses the segment boundary
    (g,) = torch.autograd.grad(second.logits.sum(), model.state_init, allow_unused=True)
    (g_whole,) = torch.autograd.grad(whole[6:].sum(), model.state_init)
    assert g is None and g_whole.abs().sum() > 0


def test_memory_fills_slots_in_order_then_overwrites_the_slot_read():
    cfg = small("paper", "hidden", "armin", "gumbel")
    model = build_model(cfg, X, Y, seed=0).double()
    x = torch.randn(1, B, X, dtype=torch.float64)
    s = model.initial_state(B)
    noise = gumbel_noise((cfg.n_slots + 1, B, cfg.n_slots), torch.Generator().manual_seed(0))
    for t in range(cfg.n_slots):
        _, s, _ = model.step(x[0], s, 1.0, noise[t])
        # paper formulation: slot t holds h_t itself
        torch.testing.assert_close(s.memory[:, t], s.h)
        assert torch.all(s.memory[:, t + 1:] == 0)
    before = s.memory.clone()
    _, s2, y = model.step(x[0], s, 1.0, noise[cfg.n_slots])
    slot = y.argmax(1)
    for b in range(B):
        torch.testing.assert_close(s2.memory[b, slot[b]], s2.h[b])
        others = [i for i in range(cfg.n_slots) if i != slot[b]]
        assert torch.equal(s2.memory[b, others], before[b, others])
