"""The old import path of the ablation spec: see `armin.spec.ablation`."""

from armin.spec.ablation import *  # noqa: F401,F403
