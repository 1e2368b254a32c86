"""Seed derivation: one run seed -> independent, named random streams.

Every consumer of randomness gets its own `torch.Generator`, seeded from (run seed, stream name),
so changing how much randomness one part uses (e.g. Gumbel noise when the temperature changes)
never shifts another part (the training batches, the initial weights).
"""

import hashlib

import torch

#: Named streams drawn from the run seed.
DATA, INIT, GUMBEL = "data", "init", "gumbel"


def derive_seed(seed: int, *names: object) -> int:
    """A 63-bit seed from a root seed and a path of names; stable across processes and versions."""
    key = "/".join([str(int(seed)), *map(str, names)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def generator(seed: int, *names: object) -> torch.Generator:
    """A CPU generator for one named stream (CPU so draws are identical on every device)."""
    return torch.Generator().manual_seed(derive_seed(seed, *names))
