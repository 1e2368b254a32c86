"""The ARMIN recurrence's forward as one Triton kernel launch per sequence (issue 11, step 2b; optional).

One program owns a block of BLOCK_B batch rows for the whole sequence: it keeps their state h and
memory (BLOCK_B, N, W) in registers and walks the T steps inside the kernel — read (logits,
softmax, argmax or soft read), the integrating cell, the write — so a sequence is one launch, not a
dozen per step. The x part of every layer (`fused.pack`'s z = x @ w_x^T + b_x) is one matmul before
it. Each step's products are `tl.dot`s of the block's rows against the (L2-resident) recurrent
weights; sizes are padded to powers of two >= 16 (tl.dot's minimum) with masked loads, and the
padding provably stays zero (every padded gate input is 0, so its state, read and write are 0).

Covered (`supports`): the integrating cell in both formulations, addressing hidden / hidden_only /
input_only, Gumbel (hard) and soft reads; forward only (inference, no autograd), as `forward(model,
x, ...)`. TARDIS addressing, the LSTM and TARDIS cells and a backward are not written yet.

Triton is optional: `available()` says whether it imports; on a machine without a GPU the kernel
runs under TRITON_INTERPRET=1 (set before triton is imported), which is how the CPU tests check it
against `naive.py` in float64. Its speed is unmeasured until a GPU runs `armin bench`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from armin.model.config import ModelConfig
from armin.model.kernel_types import ModelOutput, RecurrentState

try:
    import triton
    import triton.language as tl

    _WHY = ""
except ImportError as e:  # optional dependency
    triton = tl = None
    _WHY = f"triton is not installed ({e})"

BLOCK_B = 16  # batch rows per program (tl.dot needs >= 16)
SUPPORT = {"arch": ("armin",), "cell": ("armin",), "addressing": ("hidden", "hidden_only", "input_only"),
           "read": ("gumbel", "soft"), "formulation": ("reference", "paper")}


def available() -> bool:
    return triton is not None


def why_unavailable() -> str:
    return _WHY


def supports(cfg: ModelConfig) -> bool:
    return all(getattr(cfg, k) in allowed for k, allowed in SUPPORT.items())


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


if triton is not None:
    @triton.jit
    def _mv(v, w_ptr, ld, row0, col0, n_rows, n_cols, KP: tl.constexpr, JP: tl.constexpr):
        """v (BLOCK_B, KP) @ w[row0:row0+n_rows, col0:col0+n_cols]^T -> (BLOCK_B, JP), zero past the sizes."""
        k = tl.arange(0, KP)
        j = tl.arange(0, JP)
        wt = tl.load(w_ptr + (row0 + j[None, :]) * ld + col0 + k[:, None],
                     mask=(k[:, None] < n_cols) & (j[None, :] < n_rows), other=0.0)
        return tl.dot(v, wt.to(v.dtype), input_precision="ieee")

    @triton.jit
    def _z(z_ptr, base, rows, B, K, col0, n, JP: tl.constexpr):
        """The block's z[:, col0:col0+n] at one step (zero past n and past the batch)."""
        j = tl.arange(0, JP)
        return tl.load(z_ptr + base + rows[:, None] * K + col0 + j[None, :],
                       mask=(rows[:, None] < B) & (j[None, :] < n), other=0.0)

    @triton.jit
    def _tanh(v):
        return 2.0 * tl.sigmoid(2.0 * v) - 1.0

    @triton.jit
    def _armin_forward(z_ptr, noise_ptr, wa_ptr, w1_ptr, w2_ptr, wv_ptr, h_ptr, mem_ptr, out_ptr, y_ptr,
                       T, B, n_written, inv_temp, forget_bias,
                       H: tl.constexpr, N: tl.constexpr, W: tl.constexpr, K: tl.constexpr,
                       O1: tl.constexpr, O2: tl.constexpr, OV: tl.constexpr,
                       HP: tl.constexpr, NP: tl.constexpr, WP: tl.constexpr, BLOCK: tl.constexpr,
                       REFERENCE: tl.constexpr, SOFT: tl.constexpr, ADDRESS_H: tl.constexpr,
                       HAS_NOISE: tl.constexpr):
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        hi, ni, wi = tl.arange(0, HP), tl.arange(0, NP), tl.arange(0, WP)
        rmask = rows < B
        h = tl.load(h_ptr + rows[:, None] * H + hi[None, :], mask=rmask[:, None] & (hi[None, :] < H), other=0.0)
        mptr = mem_ptr + rows[:, None, None] * (N * W) + ni[None, :, None] * W + wi[None, None, :]
        mmask = rmask[:, None, None] & (ni[None, :, None] < N) & (wi[None, None, :] < W)
        mem = tl.load(mptr, mask=mmask, other=0.0)
        C = H + W  # columns of w1 and w2: [state | read]
        for t in range(0, T):
            base = t * B * K
            # read: logits, softmax, then the argmax slot (hard, straight-through forward) or the soft blend
            a = _z(z_ptr, base, rows, B, K, 0, N, NP)
            if ADDRESS_H:
                a += _mv(h, wa_ptr, H, 0, 0, N, H, HP, NP)
            if HAS_NOISE:
                a += tl.load(noise_ptr + t * B * N + rows[:, None] * N + ni[None, :],
                             mask=rmask[:, None] & (ni[None, :] < N), other=0.0)
            a = tl.where(ni[None, :] < N, a * inv_temp, float("-inf"))
            e = tl.exp(a - tl.max(a, axis=1)[:, None])
            y = e / tl.sum(e, axis=1)[:, None]
            idx = tl.argmax(y, axis=1)
            hit = ni[None, :] == idx[:, None]  # (BLOCK, NP) the hard read's slot
            if SOFT:
                r = tl.sum(y[:, :, None] * mem, axis=1)
            else:
                r = tl.sum(tl.where(hit[:, :, None], mem, 0.0), axis=1)
            # the integrating cell: input gates g^h, g^r, then i, j, f, o^h, o^r over [g^h h, g^r r]
            gh = tl.sigmoid(_z(z_ptr, base, rows, B, K, O1, H, HP) + _mv(h, w1_ptr, C, 0, 0, H, H, HP, HP)
                            + _mv(r, w1_ptr, C, 0, H, H, W, WP, HP))
            gr = tl.sigmoid(_z(z_ptr, base, rows, B, K, O1 + H, W, WP) + _mv(h, w1_ptr, C, H, 0, W, H, HP, WP)
                            + _mv(r, w1_ptr, C, H, H, W, W, WP, WP))
            hg, rg = gh * h, gr * r
            si = tl.sigmoid(_z(z_ptr, base, rows, B, K, O2, H, HP) + _mv(hg, w2_ptr, C, 0, 0, H, H, HP, HP)
                            + _mv(rg, w2_ptr, C, 0, H, H, W, WP, HP))
            tj = _tanh(_z(z_ptr, base, rows, B, K, O2 + H, H, HP) + _mv(hg, w2_ptr, C, H, 0, H, H, HP, HP)
                       + _mv(rg, w2_ptr, C, H, H, H, W, WP, HP))
            sf = tl.sigmoid(_z(z_ptr, base, rows, B, K, O2 + 2 * H, H, HP) + forget_bias
                            + _mv(hg, w2_ptr, C, 2 * H, 0, H, H, HP, HP) + _mv(rg, w2_ptr, C, 2 * H, H, H, W, WP, HP))
            soh = tl.sigmoid(_z(z_ptr, base, rows, B, K, O2 + 3 * H, H, HP) + _mv(hg, w2_ptr, C, 3 * H, 0, H, H, HP, HP)
                             + _mv(rg, w2_ptr, C, 3 * H, H, H, W, WP, HP))
            sor = tl.sigmoid(_z(z_ptr, base, rows, B, K, O2 + 4 * H, W, WP) + _mv(hg, w2_ptr, C, 4 * H, 0, W, H, HP, WP)
                             + _mv(rg, w2_ptr, C, 4 * H, H, W, W, WP, WP))
            new = sf * h + si * tj  # eq. (5)
            if REFERENCE:
                new = _tanh(new)
                out_h, out_r = new * soh, r * sor
                value = _z(z_ptr, base, rows, B, K, OV, W, WP) + _mv(new, wv_ptr, H, 0, 0, W, H, HP, WP)
            else:
                out_h, out_r = soh * _tanh(new), sor * _tanh(r)
                value = new  # W == H here, so WP == HP
            # outputs [o^h part | o^r part] and the soft address
            obase = out_ptr + t * B * C + rows[:, None] * C
            tl.store(obase + hi[None, :], out_h, mask=rmask[:, None] & (hi[None, :] < H))
            tl.store(obase + H + wi[None, :], out_r, mask=rmask[:, None] & (wi[None, :] < W))
            tl.store(y_ptr + t * B * N + rows[:, None] * N + ni[None, :], y, mask=rmask[:, None] & (ni[None, :] < N))
            # write: slot n_written + t while filling, then the slot read (soft reads: blend by y)
            if n_written + t < N:
                fill = (ni[None, :] == n_written + t) & rmask[:, None]
                mem = tl.where(fill[:, :, None], value[:, None, :], mem)
            elif SOFT:
                mem = y[:, :, None] * value[:, None, :] + (1.0 - y[:, :, None]) * mem
            else:
                mem = tl.where(hit[:, :, None], value[:, None, :], mem)
            h = new
        tl.store(h_ptr + rows[:, None] * H + hi[None, :], h, mask=rmask[:, None] & (hi[None, :] < H))
        tl.store(mptr, mem, mask=mmask)


def forward(model, x: Tensor, state: RecurrentState | None = None, *, temperature: float = 1.0,
            noise: Tensor | None = None) -> ModelOutput:
    """`ARMIN.forward` without gradients for a supported config, through the Triton kernel.

    `noise` (T, B, N): the Gumbel noise of a noisy read (None: none, as evaluation); soft addresses
    are returned as `reads`.
    """
    from armin.model.fused import pack

    if not available():
        raise RuntimeError(f"the Triton kernel is unavailable: {why_unavailable()}")
    if not supports(model.cfg):
        raise ValueError(f"the Triton kernel does not cover {model.cfg.describe()}")
    T, B, X = x.shape
    s = model.initial_state(B) if state is None else state
    with torch.no_grad():
        spec, w_x, b_x, w_a, w1, w2, w_v, *_ = pack(model, s.n_written, temperature)
        H, N, W = spec.H, spec.N, spec.W
        o1, o2, ov, K = spec.offsets
        z = torch.addmm(b_x, x.reshape(T * B, X), w_x.T).view(T, B, K).contiguous()
        h = s.h.detach().clone().contiguous()
        mem = s.memory.detach().clone().contiguous()
        out = x.new_empty(T, B, H + W)
        y = x.new_empty(T, B, N)
        dummy = x.new_zeros(1)
        nz = dummy if noise is None else noise.to(x).contiguous()
        grid = (triton.cdiv(B, BLOCK_B),)
        _armin_forward[grid](z, nz, dummy if w_a is None else w_a, w1, w2, dummy if w_v is None else w_v, h, mem,
                             out, y, T, B, s.n_written, 1.0 / spec.temperature, spec.forget_bias,
                             H=H, N=N, W=W, K=K, O1=o1, O2=o2, OV=ov, HP=_pad(H), NP=_pad(N), WP=_pad(W),
                             BLOCK=BLOCK_B, REFERENCE=spec.reference, SOFT=spec.soft, ADDRESS_H=spec.address_h,
                             HAS_NOISE=noise is not None)
        nxt = RecurrentState(h=h, c=None, memory=mem, n_written=min(s.n_written + T, N), prev_read=None, usage=None)
        return ModelOutput(model.head(out), nxt, y)
