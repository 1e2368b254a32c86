"""CUDA-graph replay of a training pass (armin.model.graphs).

The cache logic (which capture a call replays, when a re-capture happens, gradients rebound to the
parameters) runs on CPU with the capture injected: `capture_eager`, a mock of the CUDA-only part
(a "replay" reruns the function on the static buffers). The real capture is tested on a GPU only.
"""

import pytest
import torch

from armin.model import ModelConfig, build_model, gumbel_noise
from armin.model.graphs import GraphedPass, capture_cuda, capture_eager, eligible

CUDA = torch.cuda.is_available()


def recording(log):
    def capture(fn, inputs, params):
        log.append(tuple(t.shape for t in inputs))
        return capture_eager(fn, inputs, params)
    return capture


def linear_pass(w):
    def fn(scale, x):
        loss = (scale * x @ w).square().sum()
        loss.backward()
        return (loss.detach(),)
    return fn


def eager(w, scale, x):
    w.grad = None
    loss = (scale * x @ w).square().sum()
    loss.backward()
    return loss.detach(), w.grad.clone()


def test_a_capture_is_reused_per_shape_and_key_and_recaptured_when_either_changes():
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    log = []
    gp = GraphedPass(linear_pass(w), [w], capture=recording(log), max_graphs=2)
    gen = torch.Generator().manual_seed(0)
    calls = [((4, 3), 1.0), ((4, 3), 1.0), ((5, 3), 1.0), ((4, 3), 1.0), ((4, 3), 2.0), ((5, 3), 1.0)]
    for shape, scale in calls:
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        (loss,) = gp(x, key=scale)
        want_loss, want_grad = eager(w, scale, x)
        w.grad = None  # as zero_grad(set_to_none=True) between steps: the next call rebinds it
        (loss,) = gp(x, key=scale)
        assert torch.equal(loss, want_loss) and torch.equal(w.grad, want_grad)
    # captured: (4,3)@1; (5,3)@1; reused (4,3)@1; (4,3)@2 evicts (5,3)@1 (max 2), so (5,3)@1 is captured again
    assert log == [((4, 3),), ((5, 3),), ((4, 3),), ((5, 3),)] and gp.captures == 4
    assert len(gp.graphs) == 2


def test_the_run_rule_cuda_only_no_carried_state_and_a_rarely_changing_temperature():
    cuda = torch.device("cuda")
    assert eligible(cuda, False, [1.0] * 500)
    assert not eligible(torch.device("cpu"), False, [1.0] * 500)
    assert not eligible(cuda, True, [1.0] * 500)
    assert eligible(cuda, False, [1.0] * 400 + [0.5] * 400)  # the reference schedule: a change per 400 steps
    assert not eligible(cuda, False, [1.0 - i / 1000 for i in range(500)])  # a linear anneal: every step


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU: the real capture (torch.cuda.CUDAGraph)")
@pytest.mark.parametrize("overrides", [{}, {"formulation": "paper"}, {"cell": "lstm"},
                                       {"addressing": "tardis", "cell": "tardis"}])
def test_a_cuda_graph_replays_the_fused_pass_exactly_in_float64(overrides):
    cfg = ModelConfig(hidden_size=16, n_slots=4, r_size=4, **overrides)
    model = build_model(cfg, 5, 3, seed=0).to("cuda", torch.float64)
    params = list(model.parameters())

    def fn(temperature, x, noise):
        loss = model(x, temperature=temperature, noise=noise).logits.square().mean()
        loss.backward()
        return (loss.detach(),)

    gp = GraphedPass(fn, params, capture=capture_cuda)
    gen = torch.Generator().manual_seed(0)
    for T in (7, 7, 9):
        x = torch.randn(T, 3, 5, generator=gen, dtype=torch.float64).cuda()
        noise = gumbel_noise((T, 3, cfg.n_slots), gen, cfg.gate_noise_width).cuda()
        (loss,) = gp(x, noise, key=0.5)
        got = [p.grad.clone() for p in params]
        for p in params:
            p.grad = None
        want = fn(0.5, x, noise)[0]
        assert torch.allclose(loss, want, rtol=1e-12, atol=1e-12)
        for g, p in zip(got, params):
            assert torch.allclose(g, p.grad, rtol=1e-10, atol=1e-12)
    assert gp.captures == 2
