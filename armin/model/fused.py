"""Fast ARMIN: the whole sequence as one autograd Function with a hand-written backward.

`ARMIN.forward` (armin.py) runs one autograd graph of ~30 small ops per time step; backward through
that graph dominates training. Here the same function is computed with:
  - a forward loop writing per-step activations into preallocated (T, B, .) buffers, no graph;
  - a backward written by hand that walks the loop in reverse, restoring the memory slot each step
    overwrote, and forms every weight gradient afterwards in one matmul over all T*B rows;
  - hard reads as a gather (forward) whose straight-through gradient is <dr, M_i> per slot i
    through softmax's Jacobian; writes as index writes (write index detached, as in §4.4).
The loop runs in C++ (`fused.cpp`, built on first use by `armin.model.extension`) on CPU for
float32/float64, with batch rows split across torch's intra-op threads, and as the Python
transcription below everywhere else (CUDA, other dtypes, no compiler). Both produce the same saved
tensors and both are checked against `armin.model.naive` (tests/model/test_fused.py).

Supported (the allow-list, `supports(cfg)`): both formulations, every cell (armin, lstm, tardis),
both read modes, every addressing (hidden / hidden_only / input_only / tardis). A configuration off
the list runs ARMIN's eager step loop.

Column layout of the per-step pre-activations z (B, K); their input part is x_t @ w_x^T + b_x, where
w_x (K, X) and b_x (K) stack the x columns and biases of every layer:
  [a: A address block | p1: K1 first layer | p2: K2 second layer | v: W write value (reference)]
address block = the N read logits (A = N), or for TARDIS addressing the U = H // 4 scorer units of
the row part x_t, state, normalize(u_t) (A = U; the per-slot key and memory parts are added per slot).
first layer = input gates g^h, g^r (armin cell, K1 = H + W), the LSTM gates i, j, f, o (K1 = 4H) or
the TARDIS cell's i, f, o, alpha, beta (K1 = 3H + 2); second layer = i, j, f, o^h, o^r (armin cell,
K2 = 4H + W) or the TARDIS candidate (K2 = H). Activations saved per step (the `Saved` fields): gate
layers after their nonlinearity, in the code's order, with j as tanh(j) and f as sigmoid(f + forget_bias).

TARDIS addressing: per slot i, pre_i = p_row + kq_i + mq_i with kq = keys @ A_k^T (constant) and
mq_i = A_m M_i, kept up to date incrementally (a write of v into slot i sets mq_i = A_m v; a soft
write blends mq like M), so a step costs one (U x W) product per row, not N of them; the backward
keeps the matching gradient d_mq beside d_mem. a_i = v . tanh(pre_i) - 100 prev_i, L2-normalised
over slots; prev and usage carry the (straight-through) read address w, with gradients.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from armin.errors import ConfigError
from armin.model import extension
from armin.model.config import ModelConfig
from armin.model.grads import loop_tail
from armin.model.kernel_types import (NORM_EPS, TARDIS_GATE_SHARPNESS, TARDIS_REPEAT_PENALTY, ModelOutput,
                                      RecurrentState, Saved, Spec)

BACKENDS = ("auto", "cpp", "python", "triton")  # auto: see `kernels_for`
CUDA_KERNELS_ENV = "ARMIN_CUDA_KERNELS"  # what "auto" runs on a GPU: python (default until measured) or triton
CUDA_KERNELS = ("python", "triton")


#: The allow-list: every value of each model switch the fused loop implements. A configuration using
#: any other value (a variant added to ModelConfig but not here) runs eager.
FUSED_SUPPORT: dict[str, tuple] = {
    "arch": ("armin",),
    "formulation": ("reference", "paper"),
    "addressing": ("hidden", "hidden_only", "input_only", "tardis"),
    "cell": ("armin", "lstm", "tardis"),
    "read": ("gumbel", "soft"),
    "address_state": ("c", "h"),
}


def unsupported(cfg: ModelConfig) -> list[str]:
    """The `field=value` settings of `cfg` that the fused loop does not implement (empty: it runs fused)."""
    return [f"{k}={getattr(cfg, k)!r}" for k, allowed in FUSED_SUPPORT.items() if getattr(cfg, k) not in allowed]


def supports(cfg: ModelConfig) -> bool:
    """Whether the fused path computes this configuration (every switch on the allow-list)."""
    return not unsupported(cfg)


# ---- the Python backend: the loop written with torch ops (any device, any dtype) -------------


def _split_gates(g: Tensor, H: int, W: int) -> list[Tensor]:
    return list(g.split([H, H, H, H, W] if W else [H, H, H, H], 1))


def _normalize(v: Tensor) -> tuple[Tensor, Tensor]:
    """(v / max(||v||, eps), max(||v||, eps)) over the last dim, as F.normalize."""
    n = v.norm(dim=-1).clamp_min(NORM_EPS)
    return v / n.unsqueeze(-1), n


def _normalize_back(d: Tensor, u: Tensor, n: Tensor) -> Tensor:
    """Gradient through u = v / max(||v||, eps) given u and n = max(||v||, eps)."""
    proj = torch.where((n > NORM_EPS).unsqueeze(-1), u * (u * d).sum(-1, keepdim=True), torch.zeros_like(d))
    return (d - proj) / n.unsqueeze(-1)


def py_forward(s: Spec, x: Tensor, w_x: Tensor, b_x: Tensor, noise: Tensor | None, w_a: Tensor | None, w1: Tensor,
               w2: Tensor | None, w_v: Tensor | None, w_u: Tensor | None, w_m: Tensor | None, kq: Tensor | None,
               v: Tensor | None, h: Tensor, c: Tensor | None, memory: Tensor, prev: Tensor | None,
               usage: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Saved]:
    """(out (T, B, H+W), y (T, B, N), h_T, c_T, saved)."""
    T, B, X = x.shape
    zx = torch.addmm(b_x, x.reshape(T * B, X), w_x.T).view(T, B, -1)  # (T, B, K) input part of every step
    H, N, W, K1, U = s.H, s.N, s.W, s.K1, s.U
    o1, o2, ov, _ = s.offsets
    rows = torch.arange(B, device=zx.device)
    mem = memory.clone()
    mq = (mem @ w_m.T) if U else None  # (B, N, U) A_m M, kept current through the writes
    empty = zx.new_empty(0)
    hs, cs, rs, trs, ths, ys, idxs, g1s, g2s, olds, snaps, outs = ([] for _ in range(12))
    tps, uns, unns, scs, scns, vals = ([] for _ in range(6))
    hs.append(h)
    if c is not None:
        cs.append(c)
    for t in range(T):
        z = zx[t]
        # read
        if U:  # TARDIS: v . tanh(row part + key part + memory part) per slot, repeat penalty, L2 over slots
            un, unn = _normalize(usage)
            prow = z[:, :U] + (c if s.address_c else h) @ w_a.T + un @ w_u.T  # (B, U)
            tp = torch.tanh(prow.unsqueeze(1) + kq + mq)  # (B, N, U)
            a, scn = _normalize(tp @ v - TARDIS_REPEAT_PENALTY * prev)  # (B, N)
            tps.append(tp)
            uns.append(un)
            unns.append(unn)
            scs.append(a)
            scns.append(scn)
        else:
            a = z[:, :N] + h @ w_a.T if s.address_h else z[:, :N]  # (B, N)
        if noise is not None:
            a = a + noise[t, :, :N]
        y = torch.softmax(a / s.temperature, 1)  # (B, N)
        if s.soft:
            r = torch.bmm(y.unsqueeze(1), mem).squeeze(1)  # (B, W)
        else:
            idx = y.argmax(1)  # (B,)
            r = mem[rows, idx]  # (B, W) a gather, not a masked sum
            idxs.append(idx)
        # cell
        p1 = z[:, o1:o2] + torch.cat([h, r], 1) @ w1.T  # (B, K1)
        if s.armin_cell:
            g1 = torch.sigmoid(p1)
            gh, gr = g1[:, :H], g1[:, H:]
            p2 = z[:, o2:ov] + torch.cat([gh * h, gr * r], 1) @ w2.T  # (B, K2)
            i, j, f, oh, orr = _split_gates(p2, H, W)
            g2 = torch.cat([torch.sigmoid(i), torch.tanh(j), torch.sigmoid(f + s.forget_bias),
                            torch.sigmoid(oh), torch.sigmoid(orr)], 1)
            si, tj, sf, soh, sor = _split_gates(g2, H, W)
            new = sf * h + si * tj  # eq. (5)
            if s.reference:
                new = torch.tanh(new)
                out = torch.cat([new * soh, r * sor], 1)
            else:
                tn, tr = torch.tanh(new), torch.tanh(r)
                out = torch.cat([soh * tn, sor * tr], 1)
                ths.append(tn)
                trs.append(tr)
            g2s.append(g2)
            h = new
        else:
            if s.tardis_cell:  # i, f, o; alpha, beta = gumbel_sigmoid; candidate over [x, alpha h, beta r]
                i, f, o, ab = p1.split([H, H, H, 2], 1)
                if noise is not None:
                    ab = ab + noise[t, :, N:]
                g1 = torch.cat([torch.sigmoid(i), torch.sigmoid(f + s.forget_bias), torch.sigmoid(o),
                                torch.sigmoid(ab * TARDIS_GATE_SHARPNESS)], 1)
                si, sf, so, al, be = g1.split([H, H, H, 1, 1], 1)
                cand = torch.tanh(z[:, o2:ov] + torch.cat([al * h, be * r], 1) @ w2.T)  # (B, H)
                g2s.append(cand)
            else:  # LSTM: i, j, f, o with the candidate tanh(j)
                i, j, f, o = _split_gates(p1, H, 0)
                g1 = torch.cat([torch.sigmoid(i), torch.tanh(j), torch.sigmoid(f + s.forget_bias),
                                torch.sigmoid(o)], 1)
                si, cand, sf, so = _split_gates(g1, H, 0)
            c = sf * c + si * cand
            tc = torch.tanh(c)
            h = tc * so
            out = torch.cat([h, r], 1)
            cs.append(c)
            ths.append(tc)
        value = z[:, ov:] + h @ w_v.T if s.reference else h  # (B, W)
        # write: slot n_written + t while filling, then the slot read (soft: blend by y)
        n = s.n_written + t
        vq = value @ w_m.T if U else None  # (B, U) A_m value
        if n < N or not s.soft:
            slot = idx if n >= N else torch.full((B,), n, dtype=torch.long, device=zx.device)
            olds.append(mem[rows, slot])
            mem = mem.index_put((rows, slot), value)
            if U:
                mq = mq.index_put((rows, slot), vq)
        else:
            snaps.append(mem)
            e = y.unsqueeze(2)
            mem = e * value.unsqueeze(1) + (1 - e) * mem
            if U:
                mq = e * vq.unsqueeze(1) + (1 - e) * mq
        if U:
            w = y if s.soft else torch.nn.functional.one_hot(idx, N).to(y.dtype)  # the address's forward value
            prev, usage = w, usage + w
            vals.append(value)
        hs.append(h)
        rs.append(r)
        ys.append(y)
        g1s.append(g1)
        outs.append(out)
    st = lambda xs: torch.stack(xs) if xs else empty  # noqa: E731
    saved = Saved(hs=st(hs), cs=st(cs), r=st(rs), tr=st(trs), th=st(ths), y=st(ys), idx=st(idxs),
                  g1=st(g1s), g2=st(g2s), old=st(olds), snap=st(snaps), memory=mem,
                  tpre=st(tps), un=st(uns), unn=st(unns), sc=st(scs), scn=st(scns), val=st(vals),
                  mq=mq if U else empty, prev=prev if U else empty, usage=usage if U else empty)
    return st(outs), saved.y, h, c, saved


def _dsig(g: Tensor) -> Tensor:
    return g * (1 - g)


def py_backward(s: Spec, sv: Saved, x: Tensor, w_x: Tensor, w_a: Tensor | None, w1: Tensor, w2: Tensor | None,
                w_v: Tensor | None, w_u: Tensor | None, w_m: Tensor | None, v: Tensor | None, d_out: Tensor,
                d_h: Tensor, d_c: Tensor | None, d_mem: Tensor, d_prev: Tensor | None, d_usage: Tensor | None,
                need_dx: bool) -> tuple[Tensor | None, ...]:
    """Gradients (d_x, d_w_x, d_b_x, d_w_a, d_w1, d_w2, d_w_v, d_w_u, d_w_m, d_kq, d_v, d_h0, d_c0, d_memory0,
    d_prev0, d_usage0)."""
    T, B, _ = d_out.shape
    H, N, W, K1, U = s.H, s.N, s.W, s.K1, s.U
    o1, o2, ov, K = s.offsets
    rows = torch.arange(B, device=d_out.device)
    d_zx = d_out.new_zeros(T, B, K)
    d_mem, mem = d_mem.clone(), sv.memory.clone()
    if U:  # d_mq: gradient w.r.t. A_m M (the scorer's memory part), beside d_mem
        d_mq, d_w_m, d_kq, d_v = d_out.new_zeros(B, N, U), w_m.new_zeros(w_m.shape), d_out.new_zeros(N, U), \
            v.new_zeros(v.shape)
    n_old = sv.old.shape[0]
    for t in reversed(range(T)):
        hp, r, y, dout = sv.hs[t], sv.r[t], sv.y[t], d_out[t]
        # undo the write at t: gradient of the written value, memory as it was before it
        n = s.n_written + t
        if t < n_old:
            slot = sv.idx[t] if n >= N else torch.full((B,), n, dtype=torch.long, device=d_out.device)
            d_val = d_mem[rows, slot]
            d_mem[rows, slot] = 0
            mem[rows, slot] = sv.old[t]
            if U:
                dq = d_mq[rows, slot]  # (B, U)
                d_mq[rows, slot] = 0
        else:
            e = y.unsqueeze(2)
            d_val = (e * d_mem).sum(1)
            d_mem = d_mem * (1 - e)
            mem = sv.snap[t - n_old].clone()  # index writes below must not touch the saved snapshot
            if U:
                dq = (e * d_mq).sum(1)
                d_mq = d_mq * (1 - e)
        if U:
            d_val = d_val + dq @ w_m
            d_w_m += dq.T @ sv.val[t]
        if s.reference:
            d_zx[t, :, ov:] = d_val
            d_new = d_h + d_val @ w_v  # (B, H)
        else:
            d_new = d_h + d_val
        # cell
        d_cp = None
        if s.armin_cell:
            si, tj, sf, soh, sor = _split_gates(sv.g2[t], H, W)
            new = sv.hs[t + 1]
            dout_h, dout_r = dout[:, :H], dout[:, H:]
            if s.reference:
                d_new = d_new + dout_h * soh
                d_soh, d_r, d_sor = dout_h * new, dout_r * sor, dout_r * r
                d_cn = d_new * (1 - new * new)
            else:
                tn, tr = sv.th[t], sv.tr[t]
                d_new = d_new + dout_h * soh * (1 - tn * tn)
                d_soh, d_r, d_sor = dout_h * tn, dout_r * sor * (1 - tr * tr), dout_r * tr
                d_cn = d_new
            d_hp = d_cn * sf
            d_p2 = torch.cat([d_cn * tj * _dsig(si), d_cn * si * (1 - tj * tj), d_cn * hp * _dsig(sf),
                              d_soh * _dsig(soh), d_sor * _dsig(sor)], 1)
            d_zx[t, :, o2:ov] = d_p2
            d_hr2 = d_p2 @ w2  # (B, H+W) gradient of [g^h*h, g^r*r]
            g1 = sv.g1[t]
            d_hp = d_hp + d_hr2[:, :H] * g1[:, :H]
            d_r = d_r + d_hr2[:, H:] * g1[:, H:]
            d_p1 = torch.cat([d_hr2[:, :H] * hp, d_hr2[:, H:] * r], 1) * _dsig(g1)
        elif s.tardis_cell:
            si, sf, so, al, be = sv.g1[t].split([H, H, H, 1, 1], 1)
            cand, tc, cp = sv.g2[t], sv.th[t], sv.cs[t]
            d_new = d_new + dout[:, :H]
            d_cn = d_c + d_new * so * (1 - tc * tc)
            d_cp = d_cn * sf
            d_p2 = d_cn * si * (1 - cand * cand)
            d_zx[t, :, o2:ov] = d_p2
            d_q = d_p2 @ w2  # (B, H+W) gradient of [alpha h, beta r]
            d_al = (d_q[:, :H] * hp).sum(1, keepdim=True)
            d_be = (d_q[:, H:] * r).sum(1, keepdim=True)
            d_hp = d_q[:, :H] * al
            d_r = dout[:, H:] + d_q[:, H:] * be
            d_p1 = torch.cat([d_cn * cand * _dsig(si), d_cn * cp * _dsig(sf), d_new * tc * _dsig(so),
                              d_al * _dsig(al) * TARDIS_GATE_SHARPNESS, d_be * _dsig(be) * TARDIS_GATE_SHARPNESS], 1)
        else:
            si, tj, sf, so = _split_gates(sv.g1[t], H, 0)
            tc, cp = sv.th[t], sv.cs[t]
            d_new = d_new + dout[:, :H]
            d_r = dout[:, H:]
            d_cn = d_c + d_new * so * (1 - tc * tc)
            d_cp = d_cn * sf
            d_p1 = torch.cat([d_cn * tj * _dsig(si), d_cn * si * (1 - tj * tj), d_cn * cp * _dsig(sf),
                              d_new * tc * _dsig(so)], 1)
            d_hp = torch.zeros_like(d_new)
        d_zx[t, :, o1:o2] = d_p1
        d_hr1 = d_p1 @ w1  # (B, H+W)
        d_hp = d_hp + d_hr1[:, :H]
        d_r = d_r + d_hr1[:, H:]
        # read: r = sum_i w_i M_i, w one-hot forward with the soft gradient (straight-through)
        if s.soft:
            d_mem = d_mem + y.unsqueeze(2) * d_r.unsqueeze(1)
        else:
            d_mem[rows, sv.idx[t]] += d_r
        d_y = torch.bmm(mem, d_r.unsqueeze(2)).squeeze(2)  # (B, N): <dr, M_i>
        if U:  # w_t is also the next step's prev and part of its usage
            d_y = d_y + d_prev + d_usage
        d_a = y * (d_y - (y * d_y).sum(1, keepdim=True)) / s.temperature
        if U:  # back through the L2 norm, the repeat penalty and the per-slot scorer
            d_a = _normalize_back(d_a, sv.sc[t], sv.scn[t])
            d_prev = -TARDIS_REPEAT_PENALTY * d_a
            tp = sv.tpre[t]  # (B, N, U)
            d_v += (d_a.unsqueeze(2) * tp).sum((0, 1))
            d_pre = d_a.unsqueeze(2) * v * (1 - tp * tp)  # (B, N, U)
            d_kq += d_pre.sum(0)
            d_mq += d_pre
            d_prow = d_pre.sum(1)  # (B, U)
            d_zx[t, :, :U] = d_prow
            d_usage = d_usage + _normalize_back(d_prow @ w_u, sv.un[t], sv.unn[t])
            if s.address_c:
                d_cp = d_cp + d_prow @ w_a
            else:
                d_hp = d_hp + d_prow @ w_a
        else:
            d_zx[t, :, :N] = d_a
            if s.address_h:
                d_hp = d_hp + d_a @ w_a
        d_h, d_c = d_hp, d_cp
    tardis = (None,) * 6
    if U:
        d_w_m += d_mq.reshape(B * N, U).T @ mem.reshape(B * N, W)  # mem is memory0 again here
        d_mem = d_mem + d_mq @ w_m
        d_w_u = d_zx[..., :U].reshape(T * B, U).T @ sv.un.reshape(T * B, N)
        tardis = (d_w_u, d_w_m, d_kq, d_v, d_prev, d_usage)
    return (*loop_tail(s, sv, x, w_x, d_zx, need_dx), *tardis[:4], d_h, d_c, d_mem, *tardis[4:])


# ---- the autograd Function and the model-facing entry point -----------------------------------
class FusedSequence(torch.autograd.Function):
    """(out, y, h_T, c_T, memory_T, prev_T, usage_T) of a whole sequence of inputs x (T, B, X).

    Differentiable in x, every weight and the incoming state (h0, c0, memory0, prev0, usage0); y (the
    soft addresses, for `trace`) is not. `noise` is a constant. The TARDIS tensors (w_u, w_m, kq, v,
    prev0, usage0; outputs prev_T, usage_T) are None without TARDIS addressing.
    """

    @staticmethod
    def forward(ctx, spec: Spec, kernels, save: bool, x: Tensor, w_x: Tensor, b_x: Tensor, noise: Tensor | None,
                w_a: Tensor | None, w1: Tensor, w2: Tensor | None, w_v: Tensor | None, w_u: Tensor | None,
                w_m: Tensor | None, kq: Tensor | None, v: Tensor | None, h0: Tensor, c0: Tensor | None,
                memory0: Tensor, prev0: Tensor | None, usage0: Tensor | None):
        out, y, h, c, saved = kernels.forward(spec, x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0,
                                              memory0, prev0, usage0, save)
        ctx.spec, ctx.kernels = spec, kernels
        if save:
            ctx.save_for_backward(x, w_x, w_a, w1, w2, w_v, w_u, w_m, v, *saved)
        ctx.mark_non_differentiable(y)
        tardis = spec.U > 0
        return out, y, h, c, saved.memory, saved.prev if tardis else None, saved.usage if tardis else None

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiable
    def backward(ctx, d_out, _d_y, d_h, d_c, d_mem, d_prev, d_usage):
        x, w_x, w_a, w1, w2, w_v, w_u, w_m, v, *saved = ctx.saved_tensors
        s = ctx.spec
        if d_c is None and not s.armin_cell:
            d_c = torch.zeros_like(d_h)
        if s.U:
            d_prev = torch.zeros_like(d_out[0, :, :s.N]) if d_prev is None else d_prev.contiguous()
            d_usage = torch.zeros_like(d_out[0, :, :s.N]) if d_usage is None else d_usage.contiguous()
        grads = ctx.kernels.backward(s, Saved(*saved), x, w_x, w_a, w1, w2, w_v, w_u, w_m, v, d_out.contiguous(),
                                     d_h.contiguous(), None if s.armin_cell else d_c.contiguous(), d_mem.contiguous(),
                                     d_prev, d_usage, ctx.needs_input_grad[3])
        return (None, None, None, *grads[:3], None, *grads[3:])


class PythonKernels:
    """The loop in torch ops: any device and dtype; the readable twin of fused.cpp."""

    name = "python"

    @staticmethod
    def forward(s, x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0, memory0, prev0, usage0, save):
        return py_forward(s, x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0, memory0, prev0, usage0)

    backward = staticmethod(py_backward)


class TritonKernels:
    """The Triton forward kernel (`triton_kernel.sequence_forward`) and backward kernel
    (`triton_backward.backward`): one launch per sequence each, then the weight gradients' matmuls.
    Both cover the same calls (`triton_kernel.uncovered`); `kernels_for` picks this only for those."""

    name = "triton"

    @staticmethod
    def forward(s, x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0, memory0, prev0, usage0, save):
        from armin.model import triton_kernel

        return triton_kernel.sequence_forward(s, x, w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, h0, c0,
                                              memory0, prev0, usage0, save)

    @staticmethod
    def backward(s, sv, x, w_x, w_a, w1, w2, w_v, w_u, w_m, v, d_out, d_h, d_c, d_mem, d_prev, d_usage, need_dx):
        from armin.model import triton_backward

        return triton_backward.backward(s, sv, x, w_x, w_a, w1, w2, w_v, w_u, w_m, v, d_out, d_h, d_c, d_mem,
                                        d_prev, d_usage, need_dx)


def cuda_kernels() -> str:
    """What `kernels_for(x, "auto")` runs on a GPU: $ARMIN_CUDA_KERNELS, default python (the Triton path
    becomes the default once a GPU benchmark shows it faster; see benchmarks/gpu/)."""
    value = os.environ.get(CUDA_KERNELS_ENV, "python")
    if value not in CUDA_KERNELS:
        raise ConfigError(f"{CUDA_KERNELS_ENV}={value!r}: expected one of {', '.join(CUDA_KERNELS)}")
    return value


def kernels_for(x: Tensor, backend: str = "auto", spec: Spec | None = None):
    """The loop implementation for inputs like `x` (and the call `spec`, which "triton" must cover).

    auto: on CPU the C++ loop (float32/64, extension built), else Python; on CUDA what `cuda_kernels()`
    says, the Triton kernel only where it runs and covers `spec` (else Python). An explicit backend that
    cannot run here is a one-line RuntimeError.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "python":
        return PythonKernels
    if backend == "triton" or (backend == "auto" and x.device.type == "cuda" and cuda_kernels() == "triton"):
        from armin.model import triton_kernel

        why = triton_kernel.runs_on(x) or (triton_kernel.uncovered(spec) if spec is not None else "")
        if not why:
            return TritonKernels
        if backend == "triton":
            raise RuntimeError(f"the Triton kernels are unavailable here: {why}")
        return PythonKernels
    usable = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    ext = extension.load() if usable or backend == "cpp" else None
    if backend == "cpp" and (ext is None or not usable):
        raise RuntimeError(f"the C++ fused kernels are unavailable here (device {x.device}, dtype {x.dtype}, "
                           f"extension: {extension.status()})")
    return extension.CppKernels if usable and ext is not None else PythonKernels


class Packed(NamedTuple):
    """A model's weights in the kernels' layout (see the module doc), with the call's `Spec`."""

    spec: Spec
    w_x: Tensor  # (K, X) the x columns of every layer, in z's column order
    b_x: Tensor  # (K,)
    w_a: Tensor | None
    w1: Tensor
    w2: Tensor | None
    w_v: Tensor | None
    w_u: Tensor | None
    w_m: Tensor | None
    kq: Tensor | None
    v: Tensor | None


def pack(model, n_written: int, temperature: float) -> Packed:
    """The weights of `model` (an ARMIN with a supported config) as every fused backend takes them."""
    cfg = model.cfg
    X, H, N, W = model.sizes
    armin_cell, reference, tardis = cfg.cell == "armin", cfg.formulation == "reference", cfg.addressing == "tardis"
    if cfg.cell == "tardis":  # first layer: i, f, o (update) and alpha, beta (scale_gates), one matrix
        w_l1 = torch.cat([model.update.weight, model.scale_gates.weight])
        b_l1 = torch.cat([model.update.bias, model.scale_gates.bias])
        layer2 = model.candidate
    else:
        layer1 = model.input_gates if armin_cell else model.update
        w_l1, b_l1 = layer1.weight, layer1.bias
        layer2 = model.update if armin_cell else None
    U = model.address.out_features if tardis else 0
    spec = Spec(H=H, N=N, W=W, K1=w_l1.shape[0], K2=layer2.out_features if layer2 is not None else 0,
                reference=reference, armin_cell=armin_cell, soft=cfg.read == "soft",
                address_h=cfg.addressing != "input_only", n_written=n_written,
                temperature=float(temperature), forget_bias=cfg.forget_bias, tardis_cell=cfg.cell == "tardis",
                U=U, address_c=cfg.address_reads_c)
    # x columns and biases of every layer, stacked in z's column order
    aw = model.address.weight  # (N, X+H) hidden, (N, H) hidden_only, (N, X) input_only, (U, X+H+Kk+W+N) tardis
    x_parts = [aw.new_zeros(N, X) if cfg.addressing == "hidden_only" else aw[:, :X], w_l1[:, :X]]
    biases = [model.address.bias, b_l1]
    if layer2 is not None:
        x_parts.append(layer2.weight[:, :X])
        biases.append(layer2.bias)
    if reference:
        x_parts.append(model.write_proj.weight[:, :X])
        biases.append(model.write_proj.bias)
    # recurrent weights (the state and r columns), contiguous for the kernels
    rec = lambda w: None if w is None else w.contiguous()  # noqa: E731
    w_a = {"hidden": aw[:, X:], "hidden_only": aw, "input_only": None, "tardis": aw[:, X:X + H]}[cfg.addressing]
    w_a, w1 = rec(w_a), rec(w_l1[:, X:])
    w2 = rec(layer2.weight[:, X:]) if layer2 is not None else None
    w_v = rec(model.write_proj.weight[:, X:]) if reference else None
    w_u = w_m = kq = v = None
    if tardis:  # the scorer's columns: [x | state | key | memory slot | normalize(usage)]
        Kk = cfg.key_size
        kq = model.slot_keys @ aw[:, X + H:X + H + Kk].T  # (N, U) the per-slot key part, constant in t
        w_m, w_u = rec(aw[:, X + H + Kk:X + H + Kk + W]), rec(aw[:, X + H + Kk + W:])
        kq, v = kq.contiguous(), model.address_v
    return Packed(spec, torch.cat(x_parts), torch.cat(biases), w_a, w1, w2, w_v, w_u, w_m, kq, v)


def fused_forward(model, x: Tensor, state, *, temperature: float, noise: Tensor | None, trace: bool,
                  backend: str = "auto"):
    """`ARMIN.forward` for a supported config (see `supports`), same inputs, outputs and gradients."""
    T, N = x.shape[0], model.sizes[2]
    spec, w_x, b_x, w_a, w1, w2, w_v, w_u, w_m, kq, v = pack(model, state.n_written, temperature)
    if noise is not None:
        noise = noise.contiguous()
    kernels = kernels_for(x, backend, spec)
    save = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, w_x, b_x, w_a, w1, w2, w_v, w_u, w_m, kq, v, state.h, state.c,
                                                    state.memory, state.prev_read, state.usage))
    out, y, h, c, memory, prev, usage = FusedSequence.apply(
        spec, kernels, save, x.contiguous(), w_x, b_x, noise, w_a, w1, w2, w_v, w_u, w_m, kq, v, state.h, state.c,
        state.memory, state.prev_read, state.usage)
    nxt = RecurrentState(h=h, c=c, memory=memory, n_written=min(state.n_written + T, N), prev_read=prev, usage=usage)
    return ModelOutput(model.head(out), nxt, y if trace else None)
