"""Seed derivation: one run seed -> independent, named random streams.

Every consumer of randomness gets its own `torch.Generator`, seeded from (run seed, stream name),
so changing how much randomness one part uses (e.g. Gumbel noise when the temperature changes)
never shifts another part (the training batches, the initial weights).
"""

import hashlib

import torch

# The stream names: each derived seed is named here once, so no two consumers share a stream by a typo
# and a renamed stream (which would change every derived seed) is one visible edit. Changing a value
# changes results: they are part of what "same seed, same run" means.
DATA = "data"  # training batches (run seed): identical for every arm of a seed
INIT = "init"  # initial weights (run seed, then the parameter's name)
GUMBEL = "gumbel"  # training-time Gumbel noise (run seed)
EVAL = "eval"  # the evaluation set (train.eval_seed): seed-free, one set for every run
EVAL_GUMBEL = "eval_gumbel"  # evaluation-time Gumbel noise (run seed)
TRIAL = "trial"  # a search trial's run seed (spec seed, configuration, replicate)
REPLICATE = "replicate"  # an ablation replicate's run seed (spec seed, replicate)
RESUME = "resume"  # a resumed search's sampler seed (sampler seed, trials so far)
COST_PROFILE = "cost_profile"  # the cost profile's data and Gumbel streams (run seed, round, DATA | GUMBEL)


def derive_seed(seed: int, *names: object) -> int:
    """A 63-bit seed from a root seed and a path of names; stable across processes and versions."""
    key = "/".join([str(int(seed)), *map(str, names)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def generator(seed: int, *names: object) -> torch.Generator:
    """A CPU generator for one named stream (CPU so draws are identical on every device)."""
    return torch.Generator().manual_seed(derive_seed(seed, *names))
