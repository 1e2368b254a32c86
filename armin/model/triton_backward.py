"""The fused ARMIN loop's backward as one Triton kernel launch per sequence (issue 11, step 2b; optional).

The twin of `fused.py_backward` for the specs `covers` accepts. One program owns BLOCK_B batch rows
and walks t = T-1..0 with the carried gradients d_h (and the LSTM cell's d_c) in registers, and d_mem
and the memory (B, N, W) in global memory, updated in place: a block's (16, 64, 32) floats of either
at the default sizes are 256 a thread, more than a thread's registers. A step first undoes its write
(the replaced slot comes back from `Saved.old[t]`, or the whole memory from `Saved.snap[t - n_old]`
for a soft write after the fill), then back-propagates through the cell and the read, storing that
step's pre-activation gradient d_z[t] (B, K). A hard read or index write moves one slot per row;
passes over every slot (soft writes and reads, the straight-through d_y) go CH slots at a time.
Nothing is recomputed: every activation is read from `Saved`.
Only d_zx, d_h0 (d_c0) and d_memory0 leave the kernel; the x and weight gradients are then one matmul
each over all T*B rows, `grads.loop_tail`, shared with py_backward.

Products are `tl.dot`s of the block's gradient rows against the recurrent weights, d (BLOCK_B, n) @
w[rows, cols], padded to powers of two >= 16 with masked loads; padded rows and columns carry zeros
(every saved activation loads as 0 there and the weights' padding is masked), so they never reach a
stored value. Float32 and float64, with input_precision="ieee" as the forward kernel.

Covered: the integrating cell and the LSTM cell, both formulations, hard (Gumbel) and soft reads,
addressing hidden / hidden_only / input_only, any n_written. Not TARDIS addressing nor the TARDIS cell.
Without a GPU the kernel runs under TRITON_INTERPRET=1 (set before triton is imported), which is how
the CPU tests check it against py_backward in float64; its speed is unmeasured until a GPU runs it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from armin.model import triton_kernel
from armin.model.grads import loop_tail
from armin.model.kernel_types import Saved, Spec

triton, tl = triton_kernel.triton, triton_kernel.tl


uncovered, covers = triton_kernel.uncovered, triton_kernel.covers  # the forward's coverage: one rule


if triton is not None:
    _z = triton_kernel._z  # the block's rows of a (T, B, ld) tensor at one step, zero past the sizes
    _chunk = triton_kernel._chunk  # offsets and mask of a chunk of slots of the block's memory rows
    _put = triton_kernel._put  # ptr[step, rows, col0:col0+n] = v for a (steps, B, ld) buffer

    @triton.jit
    def _vm(d, w_ptr, ld, row0, col0, n_rows, n_cols, KP: tl.constexpr, JP: tl.constexpr):
        """d (BLOCK_B, KP) @ w[row0:row0+n_rows, col0:col0+n_cols] -> (BLOCK_B, JP), zero past the sizes."""
        k = tl.arange(0, KP)
        j = tl.arange(0, JP)
        w = tl.load(w_ptr + (row0 + k[:, None]) * ld + col0 + j[None, :],
                    mask=(k[:, None] < n_rows) & (j[None, :] < n_cols), other=0.0)
        return tl.dot(d, w.to(d.dtype), input_precision="ieee")

    @triton.jit
    def _dsig(g):
        return g * (1.0 - g)

    @triton.jit
    def _armin_backward(dz_ptr, dout_ptr, dh_ptr, dc_ptr, dmem_ptr,
                        hs_ptr, cs_ptr, r_ptr, tr_ptr, th_ptr, y_ptr, idx_ptr, g1_ptr, g2_ptr, old_ptr, snap_ptr,
                        mem_ptr, wa_ptr, w1_ptr, w2_ptr, wv_ptr,
                        T, B, n_written, n_old, temperature,
                        H: tl.constexpr, N: tl.constexpr, W: tl.constexpr, K: tl.constexpr, K1: tl.constexpr,
                        K2: tl.constexpr, O1: tl.constexpr, O2: tl.constexpr, OV: tl.constexpr,
                        HP: tl.constexpr, NP: tl.constexpr, WP: tl.constexpr, BLOCK: tl.constexpr,
                        CH: tl.constexpr, REFERENCE: tl.constexpr, SOFT: tl.constexpr, ADDRESS_H: tl.constexpr,
                        ARMIN_CELL: tl.constexpr):
        # mem_ptr (the working copy of the memory, after the last step on entry) and dmem_ptr (d_mem, the
        # upstream gradient on entry, d_memory0 on exit) are updated in place. Threads of this program exchange
        # values through them (and through d_z's address columns), so a barrier separates every store from a
        # load (or a store after a load) of the same elements by another thread; each says which pair it orders.
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        hi, wi, ci = tl.arange(0, HP), tl.arange(0, WP), tl.arange(0, CH)
        rmask = rows < B
        hmask = rmask[:, None] & (hi[None, :] < H)
        wmask = rmask[:, None] & (wi[None, :] < W)
        row_mem = rows[:, None] * (N * W) + wi[None, :]  # (BLOCK, WP): slot 0 of each row's memory, + slot * W
        d_h = tl.load(dh_ptr + rows[:, None] * H + hi[None, :], mask=hmask, other=0.0)
        if not ARMIN_CELL:
            d_c = tl.load(dc_ptr + rows[:, None] * H + hi[None, :], mask=hmask, other=0.0)
        C = H + W  # columns of d_out, w1 and w2: [state | read]
        for tt in range(0, T):
            t = T - 1 - tt
            y = _z(y_ptr, t * B * N, rows, B, N, 0, N, NP)  # (BLOCK, NP) soft address, 0 on the padding
            r = _z(r_ptr, t * B * W, rows, B, W, 0, W, WP)
            hp = _z(hs_ptr, t * B * H, rows, B, H, 0, H, HP)  # the state the step started from
            if SOFT:
                slot = tl.zeros((BLOCK,), tl.int32) + n_written + t  # only read while filling
            else:
                ridx = tl.load(idx_ptr + t * B + rows, mask=rmask, other=0).to(tl.int32)  # the hard read's slot
                slot = tl.where(n_written + t < N, n_written + t, ridx)
            # undo the write at t: gradient of the written value, memory as it was before it
            if t < n_old:  # an index write: slot n_written + t while filling, then the slot read
                sp = row_mem + slot[:, None] * W
                d_val = tl.load(dmem_ptr + sp, mask=wmask, other=0.0)  # (BLOCK, WP)
                tl.debug_barrier()  # every thread has loaded the slot's d_mem before any zeroes it
                tl.store(dmem_ptr + sp, tl.zeros((BLOCK, WP), d_val.dtype), mask=wmask)
                tl.store(mem_ptr + sp, _z(old_ptr, t * B * W, rows, B, W, 0, W, WP), mask=wmask)
            else:  # a soft write after the fill: M' = e v + (1 - e) M with e = y; slot chunk by slot chunk
                d_val = tl.zeros((BLOCK, WP), d_h.dtype)
                sbase = (t - n_old) * B * N * W
                for s0 in range(0, NP, CH):
                    off, cm = _chunk(rows, s0, B, N, W, CH, WP)
                    yc = _z(y_ptr, t * B * N, rows, B, N, s0, N - s0, CH)[:, :, None]
                    dm = tl.load(dmem_ptr + off, mask=cm, other=0.0)
                    d_val += tl.sum(yc * dm, axis=1)
                    tl.store(dmem_ptr + off, dm * (1.0 - yc), mask=cm)  # from its own load: none pending
                    tl.store(mem_ptr + off, tl.load(snap_ptr + sbase + off, mask=cm, other=0.0), mask=cm)
            if REFERENCE:  # value = z[v] + new @ w_v^T
                _put(dz_ptr, t, rows, B, K, OV, W, d_val, WP)
                d_new = d_h + _vm(d_val, wv_ptr, H, 0, 0, W, H, WP, HP)
            else:  # value = new (W == H, so WP == HP)
                d_new = d_h + d_val
            dout_h = _z(dout_ptr, t * B * C, rows, B, C, 0, H, HP)
            dout_r = _z(dout_ptr, t * B * C, rows, B, C, H, W, WP)
            gbase = t * B * K1
            if ARMIN_CELL:  # second layer i, j, f, o^h, o^r over [g^h h, g^r r]; first layer g^h, g^r
                g2base = t * B * K2
                si = _z(g2_ptr, g2base, rows, B, K2, 0, H, HP)
                tj = _z(g2_ptr, g2base, rows, B, K2, H, H, HP)
                sf = _z(g2_ptr, g2base, rows, B, K2, 2 * H, H, HP)
                soh = _z(g2_ptr, g2base, rows, B, K2, 3 * H, H, HP)
                sor = _z(g2_ptr, g2base, rows, B, K2, 4 * H, W, WP)
                if REFERENCE:  # out = [tanh(c) o^h, r o^r]
                    new = _z(hs_ptr, (t + 1) * B * H, rows, B, H, 0, H, HP)
                    d_new += dout_h * soh
                    d_soh, d_r, d_sor = dout_h * new, dout_r * sor, dout_r * r
                    d_cn = d_new * (1.0 - new * new)
                else:  # out = [o^h tanh(h), o^r tanh(r)]
                    tn = _z(th_ptr, t * B * H, rows, B, H, 0, H, HP)
                    trr = _z(tr_ptr, t * B * W, rows, B, W, 0, W, WP)
                    d_new += dout_h * soh * (1.0 - tn * tn)
                    d_soh, d_r, d_sor = dout_h * tn, dout_r * sor * (1.0 - trr * trr), dout_r * trr
                    d_cn = d_new
                d_hp = d_cn * sf
                d_i = d_cn * tj * _dsig(si)
                d_j = d_cn * si * (1.0 - tj * tj)
                d_f = d_cn * hp * _dsig(sf)
                d_oh = d_soh * _dsig(soh)
                d_or = d_sor * _dsig(sor)
                _put(dz_ptr, t, rows, B, K, O2, H, d_i, HP)
                _put(dz_ptr, t, rows, B, K, O2 + H, H, d_j, HP)
                _put(dz_ptr, t, rows, B, K, O2 + 2 * H, H, d_f, HP)
                _put(dz_ptr, t, rows, B, K, O2 + 3 * H, H, d_oh, HP)
                _put(dz_ptr, t, rows, B, K, O2 + 4 * H, W, d_or, WP)
                # d_p2 @ w2: the gradient of [g^h h, g^r r], gate block by gate block
                d_hg = (_vm(d_i, w2_ptr, C, 0, 0, H, H, HP, HP) + _vm(d_j, w2_ptr, C, H, 0, H, H, HP, HP)
                        + _vm(d_f, w2_ptr, C, 2 * H, 0, H, H, HP, HP) + _vm(d_oh, w2_ptr, C, 3 * H, 0, H, H, HP, HP)
                        + _vm(d_or, w2_ptr, C, 4 * H, 0, W, H, WP, HP))
                d_rg = (_vm(d_i, w2_ptr, C, 0, H, H, W, HP, WP) + _vm(d_j, w2_ptr, C, H, H, H, W, HP, WP)
                        + _vm(d_f, w2_ptr, C, 2 * H, H, H, W, HP, WP) + _vm(d_oh, w2_ptr, C, 3 * H, H, H, W, HP, WP)
                        + _vm(d_or, w2_ptr, C, 4 * H, H, W, W, WP, WP))
                gh = _z(g1_ptr, gbase, rows, B, K1, 0, H, HP)
                gr = _z(g1_ptr, gbase, rows, B, K1, H, W, WP)
                d_hp += d_hg * gh
                d_r += d_rg * gr
                d_p1h = d_hg * hp * _dsig(gh)
                d_p1r = d_rg * r * _dsig(gr)
                _put(dz_ptr, t, rows, B, K, O1, H, d_p1h, HP)
                _put(dz_ptr, t, rows, B, K, O1 + H, W, d_p1r, WP)
                d_hp += _vm(d_p1h, w1_ptr, C, 0, 0, H, H, HP, HP) + _vm(d_p1r, w1_ptr, C, H, 0, W, H, WP, HP)
                d_r += _vm(d_p1h, w1_ptr, C, 0, H, H, W, HP, WP) + _vm(d_p1r, w1_ptr, C, H, H, W, W, WP, WP)
            else:  # LSTM over [h, r]: i, j, f, o; c = f c + i tanh(j), h = o tanh(c), out = [h, r]
                si = _z(g1_ptr, gbase, rows, B, K1, 0, H, HP)
                tj = _z(g1_ptr, gbase, rows, B, K1, H, H, HP)
                sf = _z(g1_ptr, gbase, rows, B, K1, 2 * H, H, HP)
                so = _z(g1_ptr, gbase, rows, B, K1, 3 * H, H, HP)
                tc = _z(th_ptr, t * B * H, rows, B, H, 0, H, HP)
                cp = _z(cs_ptr, t * B * H, rows, B, H, 0, H, HP)
                d_new += dout_h
                d_r = dout_r
                d_cn = d_c + d_new * so * (1.0 - tc * tc)
                d_c = d_cn * sf
                d_i = d_cn * tj * _dsig(si)
                d_j = d_cn * si * (1.0 - tj * tj)
                d_f = d_cn * cp * _dsig(sf)
                d_o = d_new * tc * _dsig(so)
                _put(dz_ptr, t, rows, B, K, O1, H, d_i, HP)
                _put(dz_ptr, t, rows, B, K, O1 + H, H, d_j, HP)
                _put(dz_ptr, t, rows, B, K, O1 + 2 * H, H, d_f, HP)
                _put(dz_ptr, t, rows, B, K, O1 + 3 * H, H, d_o, HP)
                d_hp = (_vm(d_i, w1_ptr, C, 0, 0, H, H, HP, HP) + _vm(d_j, w1_ptr, C, H, 0, H, H, HP, HP)
                        + _vm(d_f, w1_ptr, C, 2 * H, 0, H, H, HP, HP) + _vm(d_o, w1_ptr, C, 3 * H, 0, H, H, HP, HP))
                d_r += (_vm(d_i, w1_ptr, C, 0, H, H, W, HP, WP) + _vm(d_j, w1_ptr, C, H, H, H, W, HP, WP)
                        + _vm(d_f, w1_ptr, C, 2 * H, H, H, W, HP, WP) + _vm(d_o, w1_ptr, C, 3 * H, H, H, W, HP, WP))
            # read: r = sum_i w_i M_i, w one-hot forward with the soft gradient (straight-through), so d_y_i =
            # <d_r, M_i> needs every slot: its chunks go to d_z's address columns at t (scratch until d_a)
            tl.debug_barrier()  # the undo's stores (d_mem, the memory) reach the loads below from any thread
            if not SOFT:  # d_mem's read slot += d_r: a gather and a scatter of the same elements
                rp = row_mem + ridx[:, None] * W
                tl.store(dmem_ptr + rp, tl.load(dmem_ptr + rp, mask=wmask, other=0.0) + d_r, mask=wmask)
            zb = t * B * K
            for s0 in range(0, NP, CH):
                off, cm = _chunk(rows, s0, B, N, W, CH, WP)
                if SOFT:
                    yc = _z(y_ptr, t * B * N, rows, B, N, s0, N - s0, CH)[:, :, None]
                    dm = tl.load(dmem_ptr + off, mask=cm, other=0.0)
                    tl.store(dmem_ptr + off, dm + yc * d_r[:, None, :], mask=cm)  # from its own load: none pending
                m = tl.load(mem_ptr + off, mask=cm, other=0.0)
                tl.store(dz_ptr + zb + rows[:, None] * K + s0 + ci[None, :], tl.sum(m * d_r[:, None, :], axis=2),
                         mask=rmask[:, None] & (s0 + ci[None, :] < N))
            tl.debug_barrier()  # every chunk of d_y is stored before any thread loads the whole row
            d_y = _z(dz_ptr, zb, rows, B, K, 0, N, NP)  # (BLOCK, NP), 0 on the padding
            tl.debug_barrier()  # every thread has loaded d_y before d_a overwrites it
            d_a = y * (d_y - tl.sum(y * d_y, axis=1)[:, None]) / temperature
            _put(dz_ptr, t, rows, B, K, 0, N, d_a, NP)
            if ADDRESS_H:
                d_hp += _vm(d_a, wa_ptr, H, 0, 0, N, H, NP, HP)
            d_h = d_hp
            tl.debug_barrier()  # this step's stores to d_mem and the memory precede the next step's loads of
            # them, and its loads of the memory precede the next undo's store to it (any thread)
        tl.store(dh_ptr + rows[:, None] * H + hi[None, :], d_h, mask=hmask)
        if not ARMIN_CELL:
            tl.store(dc_ptr + rows[:, None] * H + hi[None, :], d_c, mask=hmask)


def constants(s: Spec) -> dict:
    """The kernel's compile-time arguments for `s`: sizes, z's column offsets, paddings and switches."""
    o1, o2, ov, K = s.offsets
    pad = triton_kernel._pad
    return dict(H=s.H, N=s.N, W=s.W, K=K, K1=s.K1, K2=s.K2, O1=o1, O2=o2, OV=ov, HP=pad(s.H), NP=pad(s.N),
                WP=pad(s.W), BLOCK=triton_kernel.BLOCK_B, CH=triton_kernel.chunk(s), REFERENCE=s.reference,
                SOFT=s.soft, ADDRESS_H=s.address_h, ARMIN_CELL=s.armin_cell)


def shared_bytes(s: Spec, dtype: str = "fp32", arch: int = 90) -> int:
    """Shared memory per program of the kernel compiled for `s` and sm_`arch`, without a GPU."""
    return triton_kernel.shared_bytes(_armin_backward, constants(s), dtype, arch)


def backward(s: Spec, sv: Saved, x: Tensor, w_x: Tensor, w_a: Tensor | None, w1: Tensor, w2: Tensor | None,
             w_v: Tensor | None, w_u: Tensor | None, w_m: Tensor | None, v: Tensor | None, d_out: Tensor,
             d_h: Tensor, d_c: Tensor | None, d_mem: Tensor, d_prev: Tensor | None, d_usage: Tensor | None,
             need_dx: bool) -> tuple[Tensor | None, ...]:
    """`fused.py_backward` through the Triton kernel, for a spec it `covers`: the same gradients
    (d_x, d_w_x, d_b_x, d_w_a, d_w1, d_w2, d_w_v, d_w_u, d_w_m, d_kq, d_v, d_h0, d_c0, d_memory0, d_prev0,
    d_usage0), the TARDIS ones None."""
    if not triton_kernel.available():
        raise RuntimeError(f"the Triton kernel is unavailable: {triton_kernel.why_unavailable()}")
    if not covers(s):
        raise ValueError(f"the Triton backward kernel does not cover {uncovered(s)}")
    T, B, _ = d_out.shape
    d_zx = d_out.new_empty(T, B, s.offsets[3])  # the kernel stores every column of every row
    d_h0 = d_h.clone().contiguous()  # the kernel's in-out buffers: carried gradients in, step 0's out
    d_c0 = None if s.armin_cell else d_c.clone().contiguous()
    d_mem0 = d_mem.clone().contiguous()
    memory = sv.memory.clone().contiguous()  # the kernel's working copy: restored in place step by step
    dummy = d_out.new_zeros(1)
    arg = lambda t: dummy if t is None or t.numel() == 0 else t.contiguous()  # noqa: E731
    _armin_backward[(triton.cdiv(B, triton_kernel.BLOCK_B),)](
        d_zx, d_out.contiguous(), d_h0, arg(d_c0), d_mem0,
        arg(sv.hs), arg(sv.cs), arg(sv.r), arg(sv.tr), arg(sv.th), arg(sv.y), arg(sv.idx), arg(sv.g1), arg(sv.g2),
        arg(sv.old), arg(sv.snap), memory, arg(w_a), arg(w1), arg(w2), arg(w_v),
        T, B, s.n_written, sv.old.shape[0], s.temperature, **constants(s), **triton_kernel.launch_options())
    return (*loop_tail(s, sv, x, w_x, d_zx, need_dx), None, None, None, None, d_h0, d_c0, d_mem0, None, None)
