"""The memory-less LSTM baseline, as the authors' `LSTMCell` (§5): forget bias +1, one fused matrix.

Parameters are kept in the authors' layout (one (4H, X+H) matrix, gate order i, j, f, o, one bias),
so parameter counts match theirs (375,608 on copy at H=300); the forward pass maps them onto
PyTorch's fused LSTM kernel (cuDNN on GPU), which computes the same function.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from armin.model.armin import ModelOutput
from armin.model.config import ModelConfig


class LSTMState(NamedTuple):
    """The carried (h, c), each (B, H); `.detach()` like ARMIN's `RecurrentState`, so the trainer needs no
    per-model case to cut the graph between truncated-BPTT segments."""

    h: Tensor
    c: Tensor

    def detach(self) -> LSTMState:
        return LSTMState(self.h.detach(), self.c.detach())


class LSTMBaseline(nn.Module):
    def __init__(self, cfg: ModelConfig, input_size: int, output_size: int):
        super().__init__()
        self.cfg = cfg
        H = cfg.hidden_size
        self.sizes = (input_size, H)
        self.update = nn.Linear(input_size + H, 4 * H)  # rows: i, j (candidate), f, o
        self.head = nn.Linear(H, output_size)

    def fused_weights(self) -> list[Tensor]:
        """[w_ih, w_hh, b_ih, b_hh] in PyTorch's gate order (i, f, g, o), forget bias folded in."""
        X, H = self.sizes
        i, j, f, o = self.update.weight.chunk(4, 0)
        bi, bj, bf, bo = self.update.bias.chunk(4, 0)
        w = torch.cat([i, f, j, o], 0)  # (4H, X+H)
        b = torch.cat([bi, bf + self.cfg.forget_bias, bj, bo], 0)
        return [w[:, :X], w[:, X:], b, torch.zeros_like(b)]

    def forward(self, x: Tensor, state: LSTMState | None = None, *, temperature: float = 1.0,
                generator: torch.Generator | None = None, noise: Tensor | None = None,
                trace: bool = False) -> ModelOutput:
        """Same signature as `ARMIN.forward`; temperature, generator and noise are unused."""
        B, H = x.shape[1], self.sizes[1]
        if state is None:
            zeros = x.new_zeros(1, B, H)
            state = (zeros, zeros)
        else:
            state = (state[0].unsqueeze(0), state[1].unsqueeze(0))
        hs, h, c = torch.lstm(x, state, self.fused_weights(), True, 1, 0.0, self.training, False, False)
        return ModelOutput(self.head(hs), LSTMState(h[0], c[0]), None)
