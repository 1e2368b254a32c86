"""The types and constants the model (armin.py) and its fused kernels (fused.py, extension.py, the
Triton kernel) share: a leaf module importing nothing of armin's, so none of them imports another
for a type (no fused.py <-> extension.py <-> armin.py cycles).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from torch import Tensor

NORM_EPS = 1e-12  # F.normalize's eps (usage and TARDIS scores); fused.cpp's NORM_EPS
TARDIS_REPEAT_PENALTY = 100.0  # subtracted from the logit of the slot read at t-1 (§5, TARDIS); fused.cpp's too
TARDIS_GATE_SHARPNESS = 10.0 / 3.0  # the TARDIS cell's gumbel_sigmoid multiplier on alpha, beta (§5); fused.cpp's too


@dataclass(frozen=True)
class RecurrentState:
    """Everything carried from one step (or one truncated-BPTT segment) to the next."""

    h: Tensor  # (B, H) carried state: ARMIN's s_t (reference) / h_t (paper); the LSTM cell's h
    c: Tensor | None  # (B, H) the LSTM / TARDIS cell's c; None for the integrating cell
    memory: Tensor  # (B, N, W)
    n_written: int  # slots filled since the reset (the code's memcnt, shared by the batch)
    prev_read: Tensor | None  # (B, N) tardis: address used at t-1 (for the repeat penalty)
    usage: Tensor | None  # (B, N) tardis: cumulative read addresses

    def detach(self) -> "RecurrentState":
        """Cut the graph between truncated-BPTT segments, keeping values (the code's _reload_mem)."""
        d = lambda t: None if t is None else t.detach()  # noqa: E731
        return replace(self, h=d(self.h), c=d(self.c), memory=d(self.memory),
                       prev_read=d(self.prev_read), usage=d(self.usage))


@dataclass(frozen=True)
class ModelOutput:
    logits: Tensor  # (T, B, Y) pre-sigmoid / pre-softmax outputs
    state: RecurrentState | None  # to carry into the next segment (None for the plain LSTM)
    reads: Tensor | None  # (T, B, N) soft address distributions, when asked for (probes)


@dataclass(frozen=True)
class Spec:
    """Sizes and switches of one fused call (plain values, shared by both backends)."""

    H: int
    N: int
    W: int
    K1: int  # first gate layer width
    K2: int  # second gate layer width (0 for the lstm cell)
    reference: bool  # reference formulation: tanh'd state (armin cell), write projection, forget bias 1
    armin_cell: bool  # integrating cell (else LSTM cell over [x, h, r], or the TARDIS cell)
    soft: bool  # soft reads (and soft writes once memory is full)
    address_h: bool  # read logits depend on the state (hidden, hidden_only, tardis)
    n_written: int  # slots already filled when the call starts
    temperature: float
    forget_bias: float
    tardis_cell: bool = False  # the TARDIS cell (armin_cell False)
    U: int = 0  # TARDIS addressing: scorer units (0: the read logits are a linear layer)
    address_c: bool = False  # TARDIS addressing scores from the cell state c (else h)

    @property
    def A(self) -> int:
        """Width of the address block of z: N logits, or U scorer units (TARDIS)."""
        return self.U if self.U else self.N

    @property
    def NW(self) -> int:
        """Gumbel samples per row and step: N for the read, + 2 for the TARDIS cell's gates."""
        return self.N + (2 if self.tardis_cell else 0)

    @property
    def offsets(self) -> tuple[int, int, int, int]:
        """Column offsets of p1, p2, v in z (p1's is the address block's width), and (last) z's width K."""
        o2 = self.A + self.K1
        ov = o2 + self.K2
        return self.A, o2, ov, ov + (self.W if self.reference else 0)


class Saved(NamedTuple):
    """What the forward loop keeps for the backward loop (either backend)."""

    hs: Tensor  # (T+1, B, H) carried h before step 0 .. after step T-1 (the LSTM cell's h)
    cs: Tensor  # (T+1, B, H) the LSTM cell's c (empty for the armin cell)
    r: Tensor  # (T, B, W) read vectors
    tr: Tensor  # (T, B, W) tanh(r) (paper formulation, armin cell; else empty)
    th: Tensor  # (T, B, H) tanh of the new state (paper armin cell) / of c (LSTM cell); else empty
    y: Tensor  # (T, B, N) soft address distributions
    idx: Tensor  # (T, B) int64 hard read slot (gumbel; else empty)
    g1: Tensor  # (T, B, K1) first gate layer, activated
    g2: Tensor  # (T, B, K2) second gate layer, activated (armin cell; else empty)
    old: Tensor  # (T, B, W) slot content each hard write replaced
    snap: Tensor  # (S, B, N, W) memory before each soft write (S = soft-write steps)
    memory: Tensor  # (B, N, W) memory after the last step
    # TARDIS addressing (else empty)
    tpre: Tensor  # (T, B, N, U) tanh of the scorer's pre-activations
    un: Tensor  # (T, B, N) normalize(usage)
    unn: Tensor  # (T, B) max(||usage||, eps)
    sc: Tensor  # (T, B, N) the normalised slot scores
    scn: Tensor  # (T, B) max(||a||, eps)
    val: Tensor  # (T, B, W) the value each step wrote
    mq: Tensor  # (B, N, U) A_m M after the last step
    prev: Tensor  # (B, N) the address used at the last step
    usage: Tensor  # (B, N) the cumulative address after the last step
