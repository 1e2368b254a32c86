"""The Triton forward kernel (armin.model.triton_kernel) against naive.py in float64: outputs, reads, state.

Without a GPU it runs under TRITON_INTERPRET=1 on CPU tensors (set here before triton is imported);
without triton the tests skip, saying so.
"""

import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
from armin.model import ModelConfig, build_model, gumbel_noise  # noqa: E402
from armin.model import triton_kernel  # noqa: E402
from armin.model.naive import naive_armin  # noqa: E402

pytestmark = pytest.mark.skipif(not triton_kernel.available(), reason=triton_kernel.why_unavailable())
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module", autouse=True)
def interpreted():
    """A triton_kernel imported before TRITON_INTERPRET was set compiled for a GPU: re-import it."""
    if DEVICE == "cpu" and triton_kernel.available():
        importlib.reload(triton_kernel)


@pytest.mark.parametrize("overrides, batch", [
    ({}, 5),  # reference, gumbel, hidden addressing
    ({"formulation": "paper", "read": "soft", "addressing": "hidden_only"}, 5),
    ({"addressing": "input_only", "read": "soft"}, 17),  # two programs, the second masked
])
def test_the_triton_forward_matches_naive_in_float64(overrides, batch):
    cfg = ModelConfig(hidden_size=12, n_slots=3, r_size=5, **overrides)
    model = build_model(cfg, 4, 3, seed=0).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, batch, 4, generator=gen, dtype=torch.float64)  # T = 6 > N: slots are overwritten too
    noise = gumbel_noise((6, batch, cfg.n_slots), gen) if cfg.read == "gumbel" else None
    want, want_y = naive_armin(cfg, dict(model.named_parameters()), x, noise=noise, temperature=0.7)
    dev = model.to(DEVICE)
    got = triton_kernel.forward(dev, x.to(DEVICE), temperature=0.7, noise=None if noise is None else noise.to(DEVICE))
    assert torch.allclose(got.logits.cpu(), want, rtol=0, atol=1e-12)
    assert torch.allclose(got.reads.cpu(), want_y, rtol=0, atol=1e-12)
    with torch.no_grad():  # the carried state: the fused path's, from the same start
        ref = dev(x.to(DEVICE), temperature=0.7, noise=None if noise is None else noise.to(DEVICE))
    assert got.state.n_written == ref.state.n_written
    assert torch.allclose(got.state.h, ref.state.h, atol=1e-12) and torch.allclose(got.state.memory, ref.state.memory,
                                                                                   atol=1e-12)


def test_configurations_off_its_list_are_refused_in_one_line():
    model = build_model(ModelConfig(hidden_size=8, n_slots=3, cell="lstm"), 4, 3, seed=0)
    assert not triton_kernel.supports(model.cfg)
    with pytest.raises(ValueError, match="does not cover"):
        triton_kernel.forward(model, torch.zeros(2, 1, 4))
