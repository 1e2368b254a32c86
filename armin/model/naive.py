"""A plain, step-by-step transcription of the equations: the yardstick for every faster path.

Written independently of `armin.model.armin` (no shared helpers, explicit `x @ W.T + b`, dense
masked read and write exactly as the authors' code does them) and meant to be run in float64.
The equivalence tests feed it the model's own parameters and the same Gumbel noise; the model
benchmark times it as the "naive" baseline.
"""

from __future__ import annotations

import torch
from torch import Tensor

from armin.model.config import ModelConfig


def _lin(p: dict[str, Tensor], name: str, v: Tensor) -> Tensor:
    return v @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _sig(v: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-v))


def naive_armin(cfg: ModelConfig, p: dict[str, Tensor], x: Tensor, *, noise: Tensor | None,
                temperature: float) -> tuple[Tensor, Tensor]:
    """Logits (T, B, Y) and soft addresses (T, B, N) of a memory model.

    `noise` (T, B, N) or None; with the tardis cell (T, B, N + 2), its gates' noise in the last two.
    """
    T, B, X = x.shape
    H, N = cfg.hidden_size, cfg.n_slots
    W = cfg.r_size if cfg.formulation == "reference" else H
    fb = 1.0 if cfg.formulation == "reference" else 0.0
    zeros_h = torch.zeros(B, H, dtype=x.dtype)
    # reset
    if cfg.formulation == "reference":
        init = torch.tanh(p["state_init"]).repeat(B, 1)
        mem = p["memory_init"].unsqueeze(0).repeat(B, 1, 1)
    else:
        init = zeros_h
        mem = torch.zeros(B, N, W, dtype=x.dtype)
    if cfg.cell == "tardis":
        h = torch.tanh(p["hidden_init"]).repeat(B, 1) if cfg.formulation == "reference" else zeros_h
        c = init
    elif cfg.cell == "lstm":
        h, c = zeros_h, init
    else:
        h, c = init, None
    prev = torch.zeros(B, N, dtype=x.dtype)
    usage = torch.zeros(B, N, dtype=x.dtype)
    count = 0
    outputs, reads = [], []
    for t in range(T):
        xt = x[t]
        # --- read logits
        if cfg.addressing == "hidden":
            a = _lin(p, "address", torch.cat([xt, h], 1))
        elif cfg.addressing == "hidden_only":
            a = _lin(p, "address", h)
        elif cfg.addressing == "input_only":
            a = _lin(p, "address", xt)
        else:
            unorm = usage / torch.sqrt((usage ** 2).sum(1, keepdim=True)).clamp_min(1e-12)
            a = torch.zeros(B, N, dtype=x.dtype)
            for i in range(N):
                src = c if cfg.cell in ("lstm", "tardis") and cfg.address_state == "c" else h
                feat = torch.cat([xt, src, p["slot_keys"][i].repeat(B, 1), mem[:, i, :], unorm], 1)
                a[:, i] = torch.tanh(_lin(p, "address", feat)) @ p["address_v"]
            a = a - 100.0 * prev
            a = a / torch.sqrt((a ** 2).sum(1, keepdim=True)).clamp_min(1e-12)
        # --- address
        z = a if noise is None else a + noise[t][:, :N]
        z = z / temperature
        y = torch.exp(z - z.max(1, keepdim=True).values)
        y = y / y.sum(1, keepdim=True)
        if cfg.read == "soft":
            w = y
        else:
            hard = torch.zeros(B, N, dtype=x.dtype)
            hard[torch.arange(B), y.argmax(1)] = 1.0
            w = (hard - y).detach() + y
        r = (w.unsqueeze(2) * mem).sum(1)
        # --- cell
        if cfg.cell == "armin":
            g = _sig(_lin(p, "input_gates", torch.cat([xt, h, r], 1)))
            gh, gr = g[:, :H], g[:, H:]
            u = _lin(p, "update", torch.cat([xt, gh * h, gr * r], 1))
            i_, j_, f_, oh, orr = u[:, :H], u[:, H:2 * H], u[:, 2 * H:3 * H], u[:, 3 * H:4 * H], u[:, 4 * H:]
            new = _sig(f_ + fb) * h + _sig(i_) * torch.tanh(j_)
            if cfg.formulation == "paper":
                out = torch.cat([_sig(oh) * torch.tanh(new), _sig(orr) * torch.tanh(r)], 1)
                value = new
            else:
                new = torch.tanh(new)
                out = torch.cat([new * _sig(oh), r * _sig(orr)], 1)
                value = _lin(p, "write_proj", torch.cat([xt, new], 1))
            h = new
        elif cfg.cell == "tardis":
            u = _lin(p, "update", torch.cat([xt, h, r], 1))
            i_, f_, o_ = u[:, :H], u[:, H:2 * H], u[:, 2 * H:]
            sg = _lin(p, "scale_gates", torch.cat([xt, h, r], 1))
            if noise is not None:
                sg = sg + noise[t][:, N:]
            sg = _sig(sg * (10.0 / 3.0))
            alpha, beta = sg[:, :1], sg[:, 1:]
            cand = torch.tanh(_lin(p, "candidate", torch.cat([xt, alpha * h, beta * r], 1)))
            c = _sig(f_ + fb) * c + _sig(i_) * cand
            h = torch.tanh(c) * _sig(o_)
            out = torch.cat([h, r], 1)
            value = _lin(p, "write_proj", torch.cat([xt, h], 1)) if cfg.formulation == "reference" else h
        else:
            u = _lin(p, "update", torch.cat([xt, h, r], 1))
            i_, j_, f_, o_ = u[:, :H], u[:, H:2 * H], u[:, 2 * H:3 * H], u[:, 3 * H:]
            c = _sig(f_ + fb) * c + _sig(i_) * torch.tanh(j_)
            h = torch.tanh(c) * _sig(o_)
            out = torch.cat([h, r], 1)
            value = _lin(p, "write_proj", torch.cat([xt, h], 1)) if cfg.formulation == "reference" else h
        # --- write
        if count < N:
            e = torch.zeros(B, N, dtype=x.dtype)
            e[:, count] = 1.0
            count += 1
        else:
            e = w.detach()
        mem = value.unsqueeze(1) * e.unsqueeze(2) + mem * (1.0 - e.unsqueeze(2))
        prev, usage = w, usage + w
        outputs.append(_lin(p, "head", out))
        reads.append(y)
    return torch.stack(outputs), torch.stack(reads)


def naive_lstm(cfg: ModelConfig, p: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits (T, B, Y) of the plain LSTM baseline, one step at a time."""
    T, B, _ = x.shape
    H = cfg.hidden_size
    fb = 1.0 if cfg.formulation == "reference" else 0.0
    h = torch.zeros(B, H, dtype=x.dtype)
    c = torch.zeros(B, H, dtype=x.dtype)
    outputs = []
    for t in range(T):
        u = _lin(p, "update", torch.cat([x[t], h], 1))
        c = _sig(u[:, 2 * H:3 * H] + fb) * c + _sig(u[:, :H]) * torch.tanh(u[:, H:2 * H])
        h = torch.tanh(c) * _sig(u[:, 3 * H:])
        outputs.append(_lin(p, "head", h))
    return torch.stack(outputs)

