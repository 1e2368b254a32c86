"""The old import path of the search spec: see `armin.spec.search` and `armin.spec.sampling`."""

from armin.spec.base import *  # noqa: F401,F403
from armin.spec.base import parse_toml, read_spec_text  # noqa: F401
from armin.spec.sampling import *  # noqa: F401,F403
from armin.spec.search import *  # noqa: F401,F403
