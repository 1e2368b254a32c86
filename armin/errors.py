"""One error hierarchy: the CLI catches `ArminError` once and prints one line, exit code 2.

Every error armin raises on purpose is defined here, so a module that raises one imports this leaf
module only (no import cycles through the module that happens to raise it first). The modules that
raised them before re-export their names (`armin.storage.StorageError`, ...).
"""


def described(e: BaseException) -> str:
    """An exception as one line: `Type: first line of its message` (the type alone when it has none)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


class ArminError(Exception):
    """A problem the user can fix (bad spec, bad value, bad file); never a bug in armin."""


# ---- specs, values, data --------------------------------------------------------------------------


class ConfigError(ArminError):
    """A configuration value or spec is malformed; the message names where and what is allowed."""


class OutOfMemory(ConfigError):
    """An allocation the run needs was refused (the model does not fit, or not within a trial's memory bound)."""


class DataError(ArminError):
    """A data file is missing, truncated or malformed; the message names the file and what was expected."""


# ---- the database ---------------------------------------------------------------------------------


class StorageError(ArminError):
    """The database cannot be opened, read or written; the message is one line naming the file or server."""


class QueryError(ArminError):
    """An `armin query` statement was refused, failed or ran out of time; the database is unchanged."""


class StudyBusy(ArminError):
    """Another live driver holds the study's lease; the message names it in one line."""


class LeaseLost(ArminError):
    """This driver's lease was taken over (its heartbeat stopped for longer than STALE_AFTER_S)."""


# ---- running studies ------------------------------------------------------------------------------


class ClusterError(ArminError):
    """The Ray cluster cannot be reached or cannot run this study's trials."""


class StudyChanged(ArminError):
    """The study in the database is not the one this spec describes (another kind, or a changed contract)."""


class MemoryBoundTooLarge(ArminError):
    """A trial's memory bound is more than any node of the cluster has."""
