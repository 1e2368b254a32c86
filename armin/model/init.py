"""Seeded initialisation as in the authors' code (§4.5), one generator per parameter name.

Seeding by name means two ablation arms built from one seed get identical initial weights for
every parameter they share (same name, same shape): the paired design needs nothing else.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from armin.seeding import INIT, generator


def orthogonal(shape: tuple[int, int], gen: torch.Generator) -> Tensor:
    """A (semi-)orthogonal matrix from the SVD of a Gaussian one, like `helper.orthogonal_initializer`."""
    a = torch.randn(shape, generator=gen, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(a, full_matrices=False)
    return u if u.shape == a.shape else vh


def initialize(model: nn.Module, seed: int) -> None:
    """Fill every parameter of `model` from the init stream of `seed`."""
    overrides = getattr(model, "init_overrides", {})  # where one variant's authors init differently
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = generator(seed, INIT, name)
            leaf = name.rsplit(".", 1)[-1]
            kind = overrides.get(name)
            if kind == "zeros" or (kind is None and leaf in ("bias", "memory_init")):  # incl. hmem_bias (§4.1)
                value = torch.zeros(p.shape)
            elif kind == "orthogonal":  # a vector: orthogonal_ of (n, 1) is a random unit vector
                value = orthogonal((p.numel(), 1), g).reshape(p.shape)
            elif leaf == "state_init":  # the algorithmic code's c_bias = torch.rand (§4.2)
                value = torch.rand(p.shape, generator=g, dtype=torch.float64)
            elif leaf == "address_v":  # xavier_uniform on the (H/4, 1) vector, as AwTA
                bound = math.sqrt(6.0 / (p.shape[0] + 1))
                value = (torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
            else:  # every weight matrix and the TARDIS slot keys
                value = orthogonal(tuple(p.shape), g)
            p.copy_(value.to(p.dtype))
