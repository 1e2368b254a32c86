"""The paper's baselines against plain float64 transcriptions of the authors' code (shared/reference/armin.md).

Written from the reference doc (§5 TARDIS, §4.3 Gumbel-softmax, §7.1 the tau loop) in the authors'
own layout (`concat @ W_full`, inverse temperature `tau` multiplying the logits), independently of
`armin.model` and of `armin.model.naive`: the parameters are copied over by name, the Gumbel noise
is shared, everything else is computed here.
"""

import pytest
import torch

from armin.model import ModelConfig, TemperatureSchedule, build_model, gumbel_noise

X, Y, B, T = 5, 3, 3, 11
TAU = 3.0  # the authors' inverse temperature at iterations 401-800


def sig(v):
    return 1.0 / (1.0 + torch.exp(-v))


def normalize(v):  # torch.nn.functional.normalize(v, dim=1), spelled out
    return v / torch.sqrt((v * v).sum(1, keepdim=True)).clamp_min(1e-12)


def authors_params(model) -> dict:
    """Our parameters in the authors' names and layout (TARDIS / LSTMCell in algorithimic_tasks/marnn.py)."""
    p = dict(model.named_parameters())
    a = {"keys": p["slot_keys"], "vec_a": p["address_v"].unsqueeze(1), "fc.w": p["address.weight"],
         "fc.b": p["address.bias"], "fc1.w": p["write_proj.weight"], "fc1.b": p["write_proj.bias"],
         "hmem_bias": p["memory_init"].unsqueeze(0), "c_bias": p["state_init"].unsqueeze(0),
         "W_full": p["update.weight"].T, "bias": p["update.bias"], "out.w": p["head.weight"], "out.b": p["head.bias"]}
    if "hidden_init" in p:  # the TARDIS cell
        a.update({"h_bias": p["hidden_init"].unsqueeze(0), "W_full1": p["scale_gates.weight"].T,
                  "bias1": p["scale_gates.bias"], "W_full2": p["candidate.weight"].T, "bias2": p["candidate.bias"]})
    return a


def authors_run(a: dict, x, noise, cell: str, N: int):
    """sigmoid outputs (T, B, Y) of MARNN(TARDIS) (cell = "tardis") or of the TARDIS read around the authors'
    LSTMCell fed [x, r] (cell = "lstm"); the read is scored from the cell state c, as `torch.cat([x, c])`."""
    Bn = x.shape[1]
    if cell == "tardis":  # zero_state: h = tanh(h_bias), c = tanh(c_bias)
        h = torch.zeros(Bn, a["c_bias"].shape[1], dtype=x.dtype) + torch.tanh(a["h_bias"])
    else:
        h = torch.zeros(Bn, a["c_bias"].shape[1], dtype=x.dtype)
    c = torch.zeros_like(h) + torch.tanh(a["c_bias"])
    hmem = torch.zeros(Bn, N, a["hmem_bias"].shape[2], dtype=x.dtype) + a["hmem_bias"]  # _reset_mem
    prev = torch.zeros(Bn, N, dtype=x.dtype)
    u_t = torch.zeros(Bn, N, dtype=x.dtype)
    memcnt, outs = 0, []
    for t in range(x.shape[0]):
        xt = x[t]
        head = torch.cat([torch.cat([xt, c], 1).unsqueeze(1).expand(-1, N, -1),
                          a["keys"].unsqueeze(0).expand(Bn, -1, -1), hmem,
                          normalize(u_t).unsqueeze(1).expand(-1, N, -1)], 2)
        head = head @ a["fc.w"].T + a["fc.b"]
        head = torch.bmm(torch.tanh(head), a["vec_a"].unsqueeze(0).expand(Bn, -1, -1)).squeeze(2)
        head = normalize(head - prev * 100)
        y = torch.softmax((head + noise[t, :, :N]) * TAU, 1)  # gumbel_softmax
        hard = (y == y.max(1, keepdim=True).values).to(x.dtype)
        w = (hard - y).detach() + y
        r = (w.unsqueeze(2) * hmem).sum(1)
        prev, u_t = w, u_t + w
        concat0 = torch.cat([xt, h, r], 1)
        if cell == "tardis":
            i, f, o = torch.split(concat0 @ a["W_full"] + a["bias"], h.shape[1], 1)
            ab = sig((concat0 @ a["W_full1"] + a["bias1"] + noise[t, :, N:]) * (10 / 3))  # gumbel_sigmoid
            alpha, beta = ab[:, :1], ab[:, 1:]
            concat2 = concat0 * torch.cat([torch.ones_like(xt), torch.ones_like(h) * alpha,
                                           torch.ones_like(r) * beta], 1)
            new_c = torch.tanh(concat2 @ a["W_full2"] + a["bias2"])
            c = c * sig(f + 1.0) + sig(i) * new_c
        else:  # LSTMCell: i, j, f, o; forget bias 1
            i, j, f, o = torch.split(concat0 @ a["W_full"] + a["bias"], h.shape[1], 1)
            c = c * sig(f + 1.0) + sig(i) * torch.tanh(j)
        h = torch.tanh(c) * sig(o)
        if memcnt < N:
            e = torch.zeros(1, N, dtype=x.dtype)
            e[0, memcnt] = 1.0
            memcnt += 1
        else:
            e = w.detach()
        value = torch.cat([xt, h], 1) @ a["fc1.w"].T + a["fc1.b"]
        hmem = value.unsqueeze(1) * e.unsqueeze(2) + hmem * (1.0 - e.unsqueeze(2))
        outs.append(sig(torch.cat([h, r], 1) @ a["out.w"].T + a["out.b"]))
    return torch.stack(outs)


def perturbed(cfg):
    model = build_model(cfg, X, Y, seed=4).double()
    with torch.no_grad():  # move the zero-initialised biases, keys and initial states off zero
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=p.dtype))
    return model


@pytest.mark.parametrize("impl", ["fused", "eager"])
@pytest.mark.parametrize("cell", ["tardis", "lstm"])
def test_tardis_arm_matches_the_authors_code(cell, impl):
    """cell = "tardis" + tardis addressing is the authors' TARDIS; with the LSTM cell the scorer reads c."""
    cfg = ModelConfig(addressing="tardis", cell=cell, hidden_size=8, n_slots=4, r_size=6, key_size=3)
    model = perturbed(cfg)
    model.impl = impl
    x = torch.randn(T, B, X, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    noise = gumbel_noise((T, B, cfg.n_slots), torch.Generator().manual_seed(2), cfg.gate_noise_width)
    ours = torch.sigmoid(model(x, noise=noise, temperature=1 / TAU).logits)
    a = authors_params(model)
    theirs = authors_run(a, x, noise, cell, cfg.n_slots)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    target = torch.rand_like(theirs)
    bce = lambda out: -(target * torch.log(out) + (1 - target) * torch.log(1 - out)).sum()  # noqa: E731
    params = list(model.parameters())
    for name, g, g_ref in zip(dict(model.named_parameters()), torch.autograd.grad(bce(ours), params),
                              torch.autograd.grad(bce(theirs), params)):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11, msg=lambda m: f"d/d {name}: {m}")


def test_address_state_h_is_a_different_model():
    """address_state = "h" (the former reading) scores from h: it no longer matches the authors (hard reads
    may pick the same slots, so the gradient, which flows through the soft scores, tells them apart)."""
    cfg = ModelConfig(addressing="tardis", cell="lstm", address_state="h", hidden_size=8, n_slots=4, r_size=6,
                      key_size=3)
    model = perturbed(cfg)
    x = torch.randn(T, B, X, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    noise = gumbel_noise((T, B, cfg.n_slots), torch.Generator().manual_seed(2))
    ours = torch.sigmoid(model(x, noise=noise, temperature=1 / TAU).logits).sum()
    theirs = authors_run(authors_params(model), x, noise, "lstm", cfg.n_slots).sum()
    (g,), (g_ref,) = (torch.autograd.grad(v, [model.address.weight]) for v in (ours, theirs))
    assert not torch.allclose(g, g_ref)


def test_tardis_cell_initialisation_and_parameter_count_are_the_authors():
    """c_bias and h_bias start at 0, vec_a is orthogonal_ of an (H/4, 1) vector (unit norm); 69,127 on copy (§6)."""
    model = build_model(ModelConfig(addressing="tardis", cell="tardis"), 10, 8, seed=0)
    assert sum(p.numel() for p in model.parameters()) == 69_127
    assert torch.equal(model.state_init, torch.zeros(100)) and torch.equal(model.hidden_init, torch.zeros(100))
    assert model.address_v.norm().item() == pytest.approx(1.0, abs=1e-6)


def test_reference_temperature_is_the_authors_training_loop():
    """The tau loop of algorithimic_tasks/train.py, transcribed: tau = 1, and after the optimizer step of
    iteration `iter`, `if iter % 200 == 0 and iter % 400 == 0 and tau < max_tau: tau += 1`."""
    schedule, tau, max_tau = TemperatureSchedule(kind="reference"), 1, 50
    for it in range(25_000):
        assert schedule(it) == 1.0 / tau, it  # the temperature used by iteration `it` (0-based)
        if it % 200 == 0 and it % 400 == 0 and tau < max_tau:
            tau += 1
    assert tau == 50
