"""The fused ARMIN loop's forward as one Triton kernel launch per sequence (issue 11, step 2b; optional).

One program owns a block of BLOCK_B batch rows for the whole sequence: it keeps their state h (and
the LSTM cell's c) in registers, their memory rows in global memory (updated in place: a hard read
gathers one slot, a write stores one), and walks the T steps inside the kernel
— read (logits, softmax, argmax or soft read), the cell, the write — so a sequence is one launch,
not a dozen per step. The x part of every layer (z = x @ w_x^T + b_x, as `fused.pack` lays it out)
is one matmul before it. Each step's products are `tl.dot`s of the block's rows against the
(L2-resident) recurrent weights; sizes are padded to powers of two >= 16 (tl.dot's minimum) with
masked loads, and the padding provably stays zero (every padded gate input is 0, so its state, read
and write are 0).

`sequence_forward` has the fused backends' forward interface (`fused.PythonKernels.forward`): with
`save` it also writes every `Saved` tensor the hand-written backward needs, in the layout the
Python and C++ loops write, so `fused.TritonKernels` trains through it with the Triton backward
kernel (`triton_backward.py`).

Covered (`covers`, for a fused call's `Spec`): the integrating cell in both formulations and the LSTM cell; addressing hidden /
hidden_only / input_only; Gumbel (hard) and soft reads; any n_written. Not: TARDIS addressing and
the TARDIS cell (their per-slot scorer and gate noise), which run the Python loop on a GPU.

Triton is optional: `available()` says whether it imports; on a machine without a GPU the kernel
runs under TRITON_INTERPRET=1 (set before triton is imported), which is how the CPU tests check it
against `naive.py` and the Python loop in float64. Its speed is unmeasured until a GPU runs
`armin bench model --device cuda`.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from armin.model.kernel_types import Saved, Spec

try:
    import triton
    import triton.language as tl

    _WHY = ""
except ImportError as e:  # optional dependency
    triton = tl = None
    _WHY = f"triton is not installed ({e})"

BLOCK_B = 16  # batch rows per program (tl.dot needs >= 16)
NUM_WARPS = 4  # warps per program (a launch setting: `armin bench model` on a GPU also times 8)
#: No software pipelining of the T loop in either kernel: it multi-buffers the per-step weight tiles in
#: shared memory (the backward: 1.2 MB at the default sizes with Triton's default 3 stages; an H200
#: block may take 227 KB). `shared_bytes` measures it by compiling for sm_90 without a GPU.
NUM_STAGES = 1
#: Registers a thread may use (PTX .maxnreg). Without it ptxas gives both kernels 32 at the default sizes and
#: spills 13-17 KB of stack a thread; with 255, 7-9 KB (`scripts/triton_resources.py`). A grid has B / 16
#: programs, far fewer than an H200's 132 SMs, so the occupancy a register cap buys is not wanted.
MAX_REGISTERS = 255
#: Slots per chunk of a pass over the whole memory (soft reads and writes, the backward's d_y): a
#: (BLOCK_B, CH, WP) tile is the most of the memory (or its gradient) live at once, 64 floats a thread at
#: the default sizes; the whole (16, 64, 32) would be 256 a thread, past the 255 registers a thread may have.
SLOT_CHUNK = 16
FLOAT_SCALARS = ("inv_temp", "forget_bias", "temperature")  # the kernels' fp32 scalar arguments


def available() -> bool:
    return triton is not None


def why_unavailable() -> str:
    return _WHY


def interpreted() -> bool:
    """Whether Triton runs its interpreter (TRITON_INTERPRET=1: CPU tensors, the tests' mode)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def runs_on(x: Tensor) -> str:
    """Empty if the kernel can run on tensors like `x` here, else why not (one line)."""
    if not available():
        return why_unavailable()
    if x.device.type != "cuda" and not interpreted():
        return f"Triton kernels need a CUDA device (inputs on {x.device}; TRITON_INTERPRET=1 runs them on CPU)"
    return ""


def uncovered(s: Spec) -> str:
    """What of the fused call `s` the Triton kernels (forward and backward) do not compute, as one
    phrase ('' when they cover it)."""
    if s.U:
        return "TARDIS addressing"
    if s.tardis_cell:
        return "the TARDIS cell"
    return ""


def covers(s: Spec) -> bool:
    return not uncovered(s)


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def chunk(s: Spec) -> int:
    """The slots per chunk (CH) of both kernels for the call `s`."""
    return min(SLOT_CHUNK, _pad(s.N))


def forward_constants(s: Spec, save: bool, noise: bool) -> dict:
    """The forward kernel's compile-time arguments for the call `s`: sizes, z's column offsets, paddings, switches."""
    o1, o2, ov, K = s.offsets
    return dict(H=s.H, N=s.N, W=s.W, K=K, K1=s.K1, K2=max(s.K2, 1), O1=o1, O2=o2, OV=ov, HP=_pad(s.H),
                NP=_pad(s.N), WP=_pad(s.W), BLOCK=BLOCK_B, CH=chunk(s), REFERENCE=s.reference, ARMIN_CELL=s.armin_cell,
                SOFT=s.soft, ADDRESS_H=s.address_h, HAS_NOISE=noise, SAVE=save)


def launch_options() -> dict:
    """The launch settings of both kernels (also what `compiled` compiles with); `maxnreg` only where this
    Triton's CUDA backend has the option (a GPU machine's Triton may be older than the one tested here)."""
    opts = {"num_warps": NUM_WARPS, "num_stages": NUM_STAGES}
    try:
        from triton.backends.nvidia.compiler import CUDAOptions

        if MAX_REGISTERS is not None and "maxnreg" in CUDAOptions.__dataclass_fields__:
            opts["maxnreg"] = MAX_REGISTERS
    except (ImportError, AttributeError):
        pass
    return opts


def compiled(kernel, constants: dict, dtype: str = "fp32", arch: int = 90):
    """`kernel` (a @triton.jit function of this package) compiled with `constants` for CUDA sm_`arch` as the
    launches do, without a GPU (triton ships the compiler; a process with TRITON_INTERPRET set cannot
    compile). `dtype`: "fp32" or "fp64"."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {n: "constexpr" if n in constants else "*i64" if n == "idx_ptr" else f"*{dtype}" if n.endswith("_ptr")
           else "fp32" if n in FLOAT_SCALARS else "i32" for n in kernel.arg_names}
    return triton.compile(ASTSource(kernel, sig, constants), target=GPUTarget("cuda", arch, 32),
                          options=launch_options())


def shared_bytes(kernel, constants: dict, dtype: str = "fp32", arch: int = 90) -> int:
    """Shared memory per program of `kernel` compiled as `compiled` does."""
    return compiled(kernel, constants, dtype, arch).metadata.shared


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
    def _pre(z_ptr, base, rows, B, K, zcol, u, v, w_ptr, ld, row0, n, H, W, HP: tl.constexpr, WP: tl.constexpr,
             JP: tl.constexpr):
        """One gate block's pre-activation: z[:, zcol:zcol+n] + [u | v] @ w[row0:row0+n, :H+W]^T, u (., H), v (., W)."""
        return (_z(z_ptr, base, rows, B, K, zcol, n, JP) + _mv(u, w_ptr, ld, row0, 0, n, H, HP, JP)
                + _mv(v, w_ptr, ld, row0, H, n, W, WP, JP))

    @triton.jit
    def _put(ptr, step, rows, B, ld, col0, n, v, JP: tl.constexpr):
        """ptr[step, rows, col0:col0+n] = v for a (steps, B, ld) buffer."""
        j = tl.arange(0, JP)
        tl.store(ptr + step * B * ld + rows[:, None] * ld + col0 + j[None, :], v,
                 mask=(rows[:, None] < B) & (j[None, :] < n))

    @triton.jit
    def _chunk(rows, s0, B, N: tl.constexpr, W: tl.constexpr, CH: tl.constexpr, WP: tl.constexpr):
        """Offsets and mask of slots s0..s0+CH of the block's rows of a (B, N, W) buffer, (BLOCK, CH, WP)."""
        si, wi = s0 + tl.arange(0, CH), tl.arange(0, WP)
        off = rows[:, None, None] * (N * W) + si[None, :, None] * W + wi[None, None, :]
        return off, (rows < B)[:, None, None] & (si[None, :, None] < N) & (wi[None, None, :] < W)

    @triton.jit
    def _tanh(v):
        return 2.0 * tl.sigmoid(2.0 * v) - 1.0

    @triton.jit
    def _armin_forward(z_ptr, noise_ptr, wa_ptr, w1_ptr, w2_ptr, wv_ptr, h_ptr, c_ptr, mem_ptr, out_ptr, y_ptr,
                       hs_ptr, cs_ptr, r_ptr, tr_ptr, th_ptr, idx_ptr, g1_ptr, g2_ptr, old_ptr, snap_ptr,
                       T, B, n_written, n_old, inv_temp, forget_bias,
                       H: tl.constexpr, N: tl.constexpr, W: tl.constexpr, K: tl.constexpr,
                       K1: tl.constexpr, K2: tl.constexpr, O1: tl.constexpr, O2: tl.constexpr, OV: tl.constexpr,
                       HP: tl.constexpr, NP: tl.constexpr, WP: tl.constexpr, BLOCK: tl.constexpr, CH: tl.constexpr,
                       REFERENCE: tl.constexpr, ARMIN_CELL: tl.constexpr, SOFT: tl.constexpr,
                       ADDRESS_H: tl.constexpr, HAS_NOISE: tl.constexpr, SAVE: tl.constexpr):
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        hi, ni, wi = tl.arange(0, HP), tl.arange(0, NP), tl.arange(0, WP)
        rmask = rows < B
        hmask = rmask[:, None] & (hi[None, :] < H)
        h = tl.load(h_ptr + rows[:, None] * H + hi[None, :], mask=hmask, other=0.0)
        if not ARMIN_CELL:
            c = tl.load(c_ptr + rows[:, None] * H + hi[None, :], mask=hmask, other=0.0)
        # memory stays in global memory (L2-resident), updated in place: B x N x W does not fit in registers
        # at the default sizes; a hard read and write move one row of W per batch row, soft ones pass over the
        # slots chunk by chunk
        wmask = rmask[:, None] & (wi[None, :] < W)
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
            _put(y_ptr, t, rows, B, N, 0, N, y, NP)
            if SOFT:  # r = sum_i y_i M_i, slot chunk by slot chunk: no (BLOCK, NP, WP) tile is live at once
                tl.debug_barrier()  # y (just stored by other threads) is loaded chunk by chunk
                r = tl.zeros((BLOCK, WP), h.dtype)
                for s0 in range(0, NP, CH):
                    off, cm = _chunk(rows, s0, B, N, W, CH, WP)
                    r += tl.sum(_z(y_ptr, t * B * N, rows, B, N, s0, N - s0, CH)[:, :, None]
                                * tl.load(mem_ptr + off, mask=cm, other=0.0), axis=1)
            else:  # a gather of the slot read
                r = tl.load(mem_ptr + rows[:, None] * (N * W) + idx[:, None] * W + wi[None, :], mask=wmask, other=0.0)
            if ARMIN_CELL:
                # the integrating cell: input gates g^h, g^r, then i, j, f, o^h, o^r over [g^h h, g^r r]
                gh = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O1, h, r, w1_ptr, C, 0, H, H, W, HP, WP, HP))
                gr = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O1 + H, h, r, w1_ptr, C, H, W, H, W, HP, WP, WP))
                hg, rg = gh * h, gr * r
                si = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O2, hg, rg, w2_ptr, C, 0, H, H, W, HP, WP, HP))
                tj = _tanh(_pre(z_ptr, base, rows, B, K, O2 + H, hg, rg, w2_ptr, C, H, H, H, W, HP, WP, HP))
                sf = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O2 + 2 * H, hg, rg, w2_ptr, C, 2 * H, H, H, W, HP, WP, HP)
                                + forget_bias)
                soh = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O2 + 3 * H, hg, rg, w2_ptr, C, 3 * H, H, H, W, HP, WP,
                                      HP))
                sor = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O2 + 4 * H, hg, rg, w2_ptr, C, 4 * H, W, H, W, HP, WP,
                                      WP))
                new = sf * h + si * tj  # eq. (5)
                if REFERENCE:
                    new = _tanh(new)
                    out_h, out_r = new * soh, r * sor
                else:
                    th, tr = _tanh(new), _tanh(r)
                    out_h, out_r = soh * th, sor * tr
                    if SAVE:
                        _put(th_ptr, t, rows, B, H, 0, H, th, HP)
                        _put(tr_ptr, t, rows, B, W, 0, W, tr, WP)
                if SAVE:
                    _put(g1_ptr, t, rows, B, K1, 0, H, gh, HP)
                    _put(g1_ptr, t, rows, B, K1, H, W, gr, WP)
                    _put(g2_ptr, t, rows, B, K2, 0, H, si, HP)
                    _put(g2_ptr, t, rows, B, K2, H, H, tj, HP)
                    _put(g2_ptr, t, rows, B, K2, 2 * H, H, sf, HP)
                    _put(g2_ptr, t, rows, B, K2, 3 * H, H, soh, HP)
                    _put(g2_ptr, t, rows, B, K2, 4 * H, W, sor, WP)
            else:
                # the LSTM cell over [x, h, r]: i, j, f, o; o_t = [h, r]
                si = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O1, h, r, w1_ptr, C, 0, H, H, W, HP, WP, HP))
                tj = _tanh(_pre(z_ptr, base, rows, B, K, O1 + H, h, r, w1_ptr, C, H, H, H, W, HP, WP, HP))
                sf = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O1 + 2 * H, h, r, w1_ptr, C, 2 * H, H, H, W, HP, WP, HP)
                                + forget_bias)
                so = tl.sigmoid(_pre(z_ptr, base, rows, B, K, O1 + 3 * H, h, r, w1_ptr, C, 3 * H, H, H, W, HP, WP, HP))
                c = sf * c + si * tj
                tc = _tanh(c)
                new = tc * so
                out_h, out_r = new, r
                if SAVE:
                    _put(cs_ptr, t + 1, rows, B, H, 0, H, c, HP)
                    _put(th_ptr, t, rows, B, H, 0, H, tc, HP)
                    _put(g1_ptr, t, rows, B, K1, 0, H, si, HP)
                    _put(g1_ptr, t, rows, B, K1, H, H, tj, HP)
                    _put(g1_ptr, t, rows, B, K1, 2 * H, H, sf, HP)
                    _put(g1_ptr, t, rows, B, K1, 3 * H, H, so, HP)
            if REFERENCE:
                value = _z(z_ptr, base, rows, B, K, OV, W, WP) + _mv(new, wv_ptr, H, 0, 0, W, H, HP, WP)
            else:
                value = new  # W == H here, so WP == HP
            # outputs [o^h part | o^r part] and what the backward needs (the soft address is stored above)
            _put(out_ptr, t, rows, B, C, 0, H, out_h, HP)
            _put(out_ptr, t, rows, B, C, H, W, out_r, WP)
            if SAVE:
                _put(hs_ptr, t + 1, rows, B, H, 0, H, new, HP)
                _put(r_ptr, t, rows, B, W, 0, W, r, WP)
                if not SOFT:
                    tl.store(idx_ptr + t * B + rows, idx.to(tl.int64), mask=rmask)
            # write: slot n_written + t while filling, then the slot read (soft reads: blend by y)
            if n_written + t < N:
                slot = mem_ptr + rows[:, None] * (N * W) + (n_written + t) * W + wi[None, :]
                if SAVE:
                    _put(old_ptr, t, rows, B, W, 0, W, tl.load(slot, mask=wmask, other=0.0), WP)
                    tl.debug_barrier()  # every thread has loaded the slot before any overwrites it
                tl.store(slot, value, mask=wmask)
            elif SOFT:  # M' = y v + (1 - y) M, chunk by chunk
                tl.debug_barrier()  # every thread has loaded the memory for the read before any overwrites it
                for s0 in range(0, NP, CH):
                    off, cm = _chunk(rows, s0, B, N, W, CH, WP)
                    yc = _z(y_ptr, t * B * N, rows, B, N, s0, N - s0, CH)[:, :, None]
                    m = tl.load(mem_ptr + off, mask=cm, other=0.0)
                    if SAVE:
                        tl.store(snap_ptr + (t - n_old) * B * N * W + off, m, mask=cm)
                    tl.store(mem_ptr + off, yc * value[:, None, :] + (1.0 - yc) * m, mask=cm)
            else:
                if SAVE:
                    _put(old_ptr, t, rows, B, W, 0, W, r, WP)  # the slot read is the slot written
                tl.store(mem_ptr + rows[:, None] * (N * W) + idx[:, None] * W + wi[None, :], value, mask=wmask)
            tl.debug_barrier()  # the next step's read sees this write (other threads of the program made it)
            h = new
        tl.store(h_ptr + rows[:, None] * H + hi[None, :], h, mask=hmask)
        if not ARMIN_CELL:
            tl.store(c_ptr + rows[:, None] * H + hi[None, :], c, mask=hmask)


def sequence_forward(s: Spec, x: Tensor, w_x: Tensor, b_x: Tensor, noise: Tensor | None, w_a: Tensor | None,
                     w1: Tensor, w2: Tensor | None, w_v: Tensor | None, w_u, w_m, kq, v, h0: Tensor,
                     c0: Tensor | None, memory0: Tensor, prev0, usage0, save: bool
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Saved]:
    """(out (T, B, H+W), y (T, B, N), h_T, c_T, saved), as `fused.py_forward`; `saved` is complete with
    `save` (else only its memory). The TARDIS arguments (w_u, w_m, kq, v, prev0, usage0) must be None."""
    why = runs_on(x) or uncovered(s)
    if why:
        raise ValueError(f"the Triton kernel cannot run this call: {why}")
    T, B, X = x.shape
    H, N, W, K1, K2 = s.H, s.N, s.W, s.K1, s.K2
    o1, o2, ov, K = s.offsets
    z = torch.addmm(b_x, x.reshape(T * B, X), w_x.T).view(T, B, K).contiguous()
    own = lambda t: t.clone(memory_format=torch.contiguous_format)  # noqa: E731 - the kernel writes it in place
    h, mem = own(h0), own(memory0)
    c = None if s.armin_cell else own(c0)
    out, y = x.new_empty(T, B, H + W), x.new_empty(T, B, N)
    empty = x.new_empty(0)
    n_old = T if not s.soft else max(0, min(T, N - s.n_written))  # steps whose write replaced one slot
    paper = not s.reference and s.armin_cell
    if save:
        hs, cs = x.new_empty(T + 1, B, H), (empty if s.armin_cell else x.new_empty(T + 1, B, H))
        hs[0] = h
        if not s.armin_cell:
            cs[0] = c
        steps = lambda n, *shape: x.new_empty(n, *shape) if n else empty  # noqa: E731 - the Python loop's layout
        sv = dict(hs=hs, cs=cs, r=x.new_empty(T, B, W), tr=steps(T if paper else 0, B, W),
                  th=steps(T if paper or not s.armin_cell else 0, B, H), y=y,
                  idx=empty if s.soft else torch.empty(T, B, dtype=torch.long, device=x.device),
                  g1=x.new_empty(T, B, K1), g2=steps(T if s.armin_cell else 0, B, K2),
                  old=steps(n_old, B, W), snap=steps(T - n_old if s.soft else 0, B, N, W))
    dummy = x.new_zeros(1)
    ptr = lambda name: sv[name] if save and sv[name].numel() else dummy  # noqa: E731
    grid = (triton.cdiv(B, BLOCK_B),)
    _armin_forward[grid](
        z, dummy if noise is None else noise.to(x).contiguous(), dummy if w_a is None else w_a, w1,
        dummy if w2 is None else w2, dummy if w_v is None else w_v, h, dummy if c is None else c, mem, out, y,
        *(ptr(n) for n in ("hs", "cs", "r", "tr", "th")), ptr("idx") if save and not s.soft else
        torch.zeros(1, dtype=torch.long, device=x.device), *(ptr(n) for n in ("g1", "g2", "old", "snap")),
        T, B, s.n_written, n_old, 1.0 / s.temperature, s.forget_bias, **forward_constants(s, save, noise is not None),
        **launch_options())
    saved = Saved(**(dict.fromkeys(Saved._fields, empty) | (sv if save else {}) | {"memory": mem}))
    return out, y, h, c, saved
