"""The gradients every fused backend forms after its reverse loop, from d_zx (T, B, K) and the saved
activations: the x, bias and weight gradients, each one matmul over all T*B rows. A leaf beside
`kernel_types`, so the Python loop (fused.py) and the Triton backward share it without importing each
other.
"""

from __future__ import annotations

import torch
from torch import Tensor

from armin.model.kernel_types import Saved, Spec


def loop_tail(s: Spec, sv: Saved, x: Tensor, w_x: Tensor, d_zx: Tensor, need_dx: bool) -> tuple[Tensor | None, ...]:
    """What follows the reverse loop in every backend that hands back d_zx (T, B, K): the gradients
    (d_x, d_w_x, d_b_x, d_w_a, d_w1, d_w2, d_w_v), each one matmul over all T*B rows."""
    T, B, K = d_zx.shape
    R, X = T * B, x.shape[2]
    d_z = d_zx.view(R, K)
    d_x = (d_z @ w_x).view(T, B, X) if need_dx else None
    d_w_x = (x.reshape(R, X).T @ d_z).T  # (K, X); x^T @ d_z is the fast orientation for a skinny X
    return (d_x, d_w_x, d_z.sum(0), *weight_grads(s, sv, d_zx))


def weight_grads(s: Spec, sv: Saved, d_zx: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None, Tensor | None]:
    """Recurrent weight gradients, each one matmul over all T*B rows: (d_w_a, d_w1, d_w2, d_w_v)."""
    T, B, _ = d_zx.shape
    H = s.H
    o1, o2, ov, _ = s.offsets
    rows = lambda v: v.reshape(T * B, -1)  # noqa: E731
    hp = sv.hs[:-1]
    state = sv.cs[:-1] if s.address_c else hp  # what the address block reads
    d_w_a = rows(d_zx[..., :o1]).T @ rows(state) if s.address_h else None
    d_w1 = rows(d_zx[..., o1:o2]).T @ rows(torch.cat([hp, sv.r], 2))
    d_w2 = None
    if s.armin_cell:
        hr2 = torch.cat([sv.g1[..., :H] * hp, sv.g1[..., H:] * sv.r], 2)  # [g^h*h, g^r*r]
        d_w2 = rows(d_zx[..., o2:ov]).T @ rows(hr2)
    elif s.tardis_cell:
        q = torch.cat([sv.g1[..., 3 * H:3 * H + 1] * hp, sv.g1[..., 3 * H + 1:] * sv.r], 2)  # [alpha h, beta r]
        d_w2 = rows(d_zx[..., o2:ov]).T @ rows(q)
    d_w_v = rows(d_zx[..., ov:]).T @ rows(sv.hs[1:]) if s.reference else None
    return d_w_a, d_w1, d_w2, d_w_v
