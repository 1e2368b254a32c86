"""Gradient checks and the authors' parameter counts."""

import pytest
import torch

from armin.model import ModelConfig, TemperatureSchedule, build_model, count_parameters


@pytest.mark.parametrize("formulation", ["reference", "paper"])
@pytest.mark.parametrize("cell", ["armin", "lstm", "tardis"])
def test_cell_gradcheck(formulation, cell):
    cfg = ModelConfig(formulation=formulation, cell=cell, hidden_size=4, n_slots=3, r_size=3)
    model = build_model(cfg, 2, 2, seed=0).double()
    B, W = 2, cfg.slot_size
    x = torch.randn(B, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(B, 4, dtype=torch.float64, requires_grad=True)
    r = torch.randn(B, W, dtype=torch.float64, requires_grad=True)
    if cell == "armin":
        fn = lambda x, h, r: model.integrate(x, h, r)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, h, r))
    elif cell == "lstm":
        c = torch.randn(B, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, h, c, r: model.lstm_cell(x, h, c, r), (x, h, c, r))
    else:  # gate noise is a constant input
        c = torch.randn(B, 4, dtype=torch.float64, requires_grad=True)
        noise = torch.randn(B, 2, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda x, h, c, r: model.tardis_cell(x, h, c, r, noise), (x, h, c, r))


@pytest.mark.parametrize("addressing,cell", [("hidden", "armin"), ("tardis", "armin"), ("tardis", "tardis"),
                                             ("tardis", "lstm")])
def test_whole_sequence_gradcheck_with_soft_reads(addressing, cell):
    """With soft reads the model is smooth end to end, so autograd must equal finite differences.

    (Straight-through Gumbel reads deliberately use a biased surrogate gradient, so gradcheck does
    not apply; `test_hard_read_is_one_hot_and_gradient_is_straight_through` pins that instead. Once
    memory is full the write index is detached by design, so T <= n_slots here.)
    """
    cfg = ModelConfig(read="soft", addressing=addressing, cell=cell, hidden_size=4, n_slots=5, r_size=3, key_size=2)
    model = build_model(cfg, 2, 2, seed=0).double()
    x = torch.randn(5, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x).logits, (x,))


@pytest.mark.parametrize("cfg,expected", [
    (ModelConfig(), 92_518),  # ARMIN, reference formulation, copy (§6)
    (ModelConfig(addressing="tardis"), 92_193),  # AwTA (§6)
    (ModelConfig(addressing="tardis", cell="tardis"), 69_127),  # TARDIS (§6)
    (ModelConfig(arch="lstm", hidden_size=300), 375_608),  # the authors' LSTM baseline (§6)
])
def test_parameter_counts_match_the_authors_on_copy(cfg, expected):
    assert count_parameters(build_model(cfg, 10, 8, seed=0)) == expected


def test_same_seed_same_weights_and_shared_parameters_agree_across_arms():
    a = dict(build_model(ModelConfig(), 10, 8, seed=5).named_parameters())
    b = dict(build_model(ModelConfig(temperature=TemperatureSchedule(kind="reference")), 10, 8, seed=5).named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    lstm_cell = dict(build_model(ModelConfig(cell="lstm"), 10, 8, seed=5).named_parameters())
    shared = [n for n in a if n in lstm_cell and a[n].shape == lstm_cell[n].shape]
    assert {"address.weight", "write_proj.weight", "head.weight", "memory_init", "state_init"} <= set(shared)
    assert all(torch.equal(a[n], lstm_cell[n]) for n in shared)
    other = dict(build_model(ModelConfig(), 10, 8, seed=6).named_parameters())
    assert not torch.equal(a["update.weight"], other["update.weight"])


def test_initial_weights_are_orthogonal():
    w = build_model(ModelConfig(), 10, 8, seed=0).update.weight.double()  # (432, 142)
    torch.testing.assert_close(w.T @ w, torch.eye(142, dtype=torch.float64), atol=1e-5, rtol=0)
