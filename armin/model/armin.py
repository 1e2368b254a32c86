"""ARMIN (Li et al., IJCAI 2019) and its ablation family, read top to bottom.

One time step is read -> cell -> write (§3, Fig. 1):
  read:  logits a_t from the addressing source, a one-hot (or soft) address w_t, r_t = w_t . M
  cell:  the integrating cell (patent eqs. (1)-(6)), an LSTM cell fed [x_t, r_t], or the authors'
         TARDIS cell (§5)
  write: the first N steps fill slots 0..N-1 in order; then the new state overwrites the slot
         just read (write index detached)
Section numbers (§) refer to `shared/reference/armin.md`; `ModelConfig` holds the switches.

`ARMIN(..., impl="fused")` (the default) runs whole sequences through `armin.model.fused` (one
autograd Function, hand-written backward, C++ loop on CPU) for every configuration on its
allow-list (`fused.supports`, today all of them); `impl="eager"` runs the step loop below, which is
also what a configuration off the list runs. Both compute the same function; `impl` is an
execution switch, not an ablation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from armin.model import fused
from armin.model.config import ModelConfig
from armin.model.kernel_types import TARDIS_GATE_SHARPNESS, TARDIS_REPEAT_PENALTY, ModelOutput, RecurrentState

GUMBEL_EPS = 1e-20  # inside both logs of the Gumbel sample, as the authors' code (§4.3)
IMPLS = ("fused", "eager")  # fused: whole-sequence kernel where `fused.supports(cfg)`; eager: the step loop


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None, extra: int = 0) -> Tensor:
    """Standard Gumbel samples, drawn on the CPU so every device sees identical noise.

    `extra` > 0 appends that many columns (the TARDIS cell's gate noise) drawn *after* the read
    noise, so two arms that differ only in the cell still see identical read noise.
    """
    def draw(s):
        u = torch.rand(s, generator=generator, dtype=torch.float64)
        return -torch.log(GUMBEL_EPS - torch.log(GUMBEL_EPS + u))
    reads = draw(shape)
    return torch.cat([reads, draw((*shape[:-1], extra))], -1) if extra else reads


class ARMIN(nn.Module):
    """A memory-augmented RNN over a whole batch of sequences, input (T, B, X)."""

    def __init__(self, cfg: ModelConfig, input_size: int, output_size: int, *, impl: str = "fused"):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.cfg = cfg
        self.impl = impl  # settable at any time: model.impl = "eager" runs the step loop
        self.kernels = "auto"  # the fused loop's backend (fused.BACKENDS): an execution switch too
        X, H, N, W = input_size, cfg.hidden_size, cfg.n_slots, cfg.slot_size
        self.sizes = (X, H, N, W)
        # Addressing: where the read logits come from (§3.1; TARDIS scorer §5)
        if cfg.addressing == "hidden":
            self.address = nn.Linear(X + H, N)
        elif cfg.addressing == "hidden_only":
            self.address = nn.Linear(H, N)
        elif cfg.addressing == "input_only":
            self.address = nn.Linear(X, N)
        else:  # tardis: v^T tanh(A [x, h, key_i, M_i, normalize(u)] + b) per slot
            self.address = nn.Linear(X + H + cfg.key_size + W + N, H // 4)
            self.slot_keys = nn.Parameter(torch.empty(N, cfg.key_size))
            self.address_v = nn.Parameter(torch.empty(H // 4))
        # Cell
        if cfg.cell == "armin":
            self.input_gates = nn.Linear(X + H + W, H + W)  # W_ig, eq. (1): g^h, g^r
            self.update = nn.Linear(X + H + W, 4 * H + W)  # W_go, eq. (4): i, j, f, o^h, o^r
        elif cfg.cell == "lstm":
            self.update = nn.Linear(X + H + W, 4 * H)  # LSTM over [x, h, r]: i, j, f, o
        else:  # tardis: the authors' W_full (i, f, o), W_full1 (alpha, beta), W_full2 (candidate)
            self.update = nn.Linear(X + H + W, 3 * H)
            self.scale_gates = nn.Linear(X + H + W, 2)
            self.candidate = nn.Linear(X + H + W, H)
        self.init_overrides: dict[str, str] = {}  # parameter name -> init kind where the authors differ (init.py)
        if cfg.formulation == "reference":
            self.write_proj = nn.Linear(X + H, W)  # the code's `trans([x, s_t])` (§4.6 #6)
            self.state_init = nn.Parameter(torch.empty(H))  # initial state tanh(c_bias) (§4.6 #9)
            self.memory_init = nn.Parameter(torch.empty(N, W))  # learned initial slots (§4.6 #10)
            if cfg.cell == "tardis":  # TARDIS learns h0 = tanh(h_bias) too; both biases start at 0
                self.hidden_init = nn.Parameter(torch.empty(H))
                self.init_overrides.update(state_init="zeros", hidden_init="zeros")
        if cfg.cell == "tardis" and cfg.addressing == "tardis":  # TARDIS: nn.init.orthogonal_(vec_a)
            self.init_overrides["address_v"] = "orthogonal"
        self.head = nn.Linear(H + W, output_size)  # one linear layer on o_t (§3.4)

    # ---- state ---------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> RecurrentState:
        """The per-sequence reset: learned (reference) or zero (paper) state and memory."""
        X, H, N, W = self.sizes
        p = self.head.weight
        zeros = lambda *s: torch.zeros(*s, dtype=p.dtype, device=p.device)  # noqa: E731
        if self.cfg.formulation == "reference":
            state = torch.tanh(self.state_init).expand(batch_size, H)
            memory = self.memory_init.expand(batch_size, N, W)
        else:
            state, memory = zeros(batch_size, H), zeros(batch_size, N, W)
        if self.cfg.cell == "tardis":  # learned h0 and c0 (zeros in the paper formulation)
            h = torch.tanh(self.hidden_init).expand(batch_size, H) if self.cfg.formulation == "reference" else state
            c = state
        elif self.cfg.cell == "lstm":  # the learned init goes to the cell state c; h starts at 0
            h, c = zeros(batch_size, H), state
        else:
            h, c = state, None
        tardis = self.cfg.addressing == "tardis"
        return RecurrentState(h=h, c=c, memory=memory, n_written=0,
                              prev_read=zeros(batch_size, N) if tardis else None,
                              usage=zeros(batch_size, N) if tardis else None)

    # ---- one step ------------------------------------------------------------------------------
    def address_logits(self, x: Tensor, s: RecurrentState) -> Tensor:
        """Read logits a_t, (B, N)."""
        kind = self.cfg.addressing
        if kind == "hidden":
            return self.address(torch.cat([x, s.h], 1))
        if kind == "hidden_only":
            return self.address(s.h)
        if kind == "input_only":
            return self.address(x)
        B, N = s.memory.shape[:2]
        state = s.c if self.cfg.address_reads_c else s.h  # the authors' TARDIS scores from c
        per_slot = torch.cat([
            torch.cat([x, state], 1).unsqueeze(1).expand(B, N, -1),  # (B, N, X+H)
            self.slot_keys.unsqueeze(0).expand(B, N, -1),  # (B, N, K)
            s.memory,  # (B, N, W)
            F.normalize(s.usage, dim=1).unsqueeze(1).expand(B, N, N),  # (B, N, N)
        ], 2)
        score = torch.tanh(self.address(per_slot)) @ self.address_v  # (B, N)
        score = score - TARDIS_REPEAT_PENALTY * s.prev_read
        return F.normalize(score, dim=1)  # L2 over slots, as the algorithmic AwTA

    def read_address(self, logits: Tensor, temperature: float, noise: Tensor | None) -> tuple[Tensor, Tensor]:
        """(w, y): the address used in the forward pass and the soft distribution behind it."""
        if self.cfg.read == "soft":
            y = torch.softmax(logits / temperature, 1)
            return y, y
        y = torch.softmax((logits if noise is None else logits + noise) / temperature, 1)  # (B, N)
        hard = F.one_hot(y.argmax(1), y.shape[1]).to(y.dtype)  # one slot, ties to the lowest
        return hard - y.detach() + y, y  # straight-through: one-hot forward, soft gradient

    def integrate(self, x: Tensor, h: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The integrating cell: (new carried state, o_t, value to write)."""
        H, W = self.sizes[1], self.sizes[3]
        gh, gr = torch.sigmoid(self.input_gates(torch.cat([x, h, r], 1))).split([H, W], 1)  # eq. (1)
        z = self.update(torch.cat([x, gh * h, gr * r], 1))  # eqs. (2)-(4): x is never gated
        i, j, f, o_h, o_r = z.split([H, H, H, H, W], 1)  # the code's split order
        new = torch.sigmoid(f + self.cfg.forget_bias) * h + torch.sigmoid(i) * torch.tanh(j)  # eq. (5)
        if self.cfg.formulation == "paper":  # eq. (6); h_t is carried and written unsquashed
            out = torch.cat([torch.sigmoid(o_h) * torch.tanh(new), torch.sigmoid(o_r) * torch.tanh(r)], 1)
            return new, out, new
        new = torch.tanh(new)  # the code carries tanh'd state and has no tanh on r (§4.6 #4, #5)
        out = torch.cat([new * torch.sigmoid(o_h), r * torch.sigmoid(o_r)], 1)
        return new, out, self.write_proj(torch.cat([x, new], 1))

    def lstm_cell(self, x: Tensor, h: Tensor, c: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The `cell = "lstm"` ablation: (h, c, o_t = [h, r], value to write)."""
        i, j, f, o = self.update(torch.cat([x, h, r], 1)).chunk(4, 1)
        c = torch.sigmoid(f + self.cfg.forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
        h = torch.tanh(c) * torch.sigmoid(o)
        value = self.write_proj(torch.cat([x, h], 1)) if self.cfg.formulation == "reference" else h
        return h, c, torch.cat([h, r], 1), value

    def tardis_cell(self, x: Tensor, h: Tensor, c: Tensor, r: Tensor, noise: Tensor | None
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The authors' TARDIS cell (§5): (h, c, o_t = [h, r], value to write); `noise` (B, 2) or None."""
        xhr = torch.cat([x, h, r], 1)
        i, f, o = self.update(xhr).chunk(3, 1)
        z = self.scale_gates(xhr) if noise is None else self.scale_gates(xhr) + noise  # gumbel_sigmoid
        alpha, beta = torch.sigmoid(z * TARDIS_GATE_SHARPNESS).split(1, 1)  # (B, 1) scalars
        cand = torch.tanh(self.candidate(torch.cat([x, alpha * h, beta * r], 1)))
        c = torch.sigmoid(f + self.cfg.forget_bias) * c + torch.sigmoid(i) * cand
        h = torch.tanh(c) * torch.sigmoid(o)
        value = self.write_proj(torch.cat([x, h], 1)) if self.cfg.formulation == "reference" else h
        return h, c, torch.cat([h, r], 1), value

    def step(self, x: Tensor, s: RecurrentState, temperature: float, noise: Tensor | None
             ) -> tuple[Tensor, RecurrentState, Tensor]:
        """One time step: (o_t, next state, soft address y_t); noise (B, N + gate noise width) or None."""
        N = self.sizes[2]
        # read (from memory holding writes up to t-1)
        w, y = self.read_address(self.address_logits(x, s), temperature, None if noise is None else noise[:, :N])
        r = torch.bmm(w.unsqueeze(1), s.memory).squeeze(1)  # (B, W)
        # cell
        if self.cfg.cell == "armin":
            h, out, value = self.integrate(x, s.h, r)
            c = None
        elif self.cfg.cell == "lstm":
            h, c, out, value = self.lstm_cell(x, s.h, s.c, r)
        else:
            h, c, out, value = self.tardis_cell(x, s.h, s.c, r, None if noise is None else noise[:, N:])
        # write: fill slots in order, then overwrite the slot just read (index detached)
        if s.n_written < N:
            e = F.one_hot(torch.tensor(s.n_written, device=x.device), N).to(x.dtype).expand_as(w)
        else:
            e = w.detach()
        e = e.unsqueeze(2)  # (B, N, 1)
        memory = e * value.unsqueeze(1) + (1 - e) * s.memory  # (B, N, W)
        tardis = self.cfg.addressing == "tardis"
        nxt = RecurrentState(h=h, c=c, memory=memory, n_written=min(s.n_written + 1, N),
                             prev_read=w if tardis else None, usage=s.usage + w if tardis else None)
        return out, nxt, y

    # ---- a whole sequence ----------------------------------------------------------------------
    def noisy(self) -> bool:
        """Whether reads draw Gumbel noise now (training, or evaluation with eval_noise)."""
        return self.cfg.read == "gumbel" and (self.training or self.cfg.eval_noise)

    def forward(self, x: Tensor, state: RecurrentState | None = None, *, temperature: float = 1.0,
                generator: torch.Generator | None = None, noise: Tensor | None = None,
                trace: bool = False) -> ModelOutput:
        """Run (T, B, X) inputs from `state` (None: a fresh reset).

        Gumbel noise (T, B, N + cfg.gate_noise_width) is drawn from `generator` unless given as
        `noise` (tests pass it to compare implementations on identical noise).
        """
        T, B, _ = x.shape
        s = self.initial_state(B) if state is None else state
        if self.noisy() and noise is None:
            noise = gumbel_noise((T, B, self.sizes[2]), generator, self.cfg.gate_noise_width)
        if not self.noisy():
            noise = None
        if noise is not None:
            noise = noise.to(device=x.device, dtype=x.dtype)
        if self.impl == "fused" and fused.supports(self.cfg):
            return fused.fused_forward(self, x, s, temperature=temperature, noise=noise, trace=trace,
                                       backend=self.kernels)
        outs, reads = [], []
        for t in range(T):
            out, s, y = self.step(x[t], s, temperature, None if noise is None else noise[t])
            outs.append(out)
            if trace:
                reads.append(y.detach())
        logits = self.head(torch.stack(outs))  # (T, B, Y)
        return ModelOutput(logits, s, torch.stack(reads) if trace else None)
