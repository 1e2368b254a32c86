"""Memory probes computed from the soft read addresses of an evaluation pass."""

from __future__ import annotations

import torch
from torch import Tensor


def read_entropy(reads: Tensor) -> float:
    """Mean entropy (nats) of the address distribution per step; 0 = certain, log N = uniform."""
    return float(-(reads * torch.log(reads.clamp_min(1e-30))).sum(-1).mean())


def slot_usage(reads: Tensor) -> float:
    """Mean fraction of slots that a sequence reads at least once (by the argmax address)."""
    T, B, N = reads.shape
    used = torch.zeros(B, N, dtype=torch.bool, device=reads.device)
    used.scatter_(1, reads.argmax(-1).T, True)  # (B, N)
    return float(used.float().mean())
