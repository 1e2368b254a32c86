"""One error hierarchy: the CLI catches `ArminError` once and prints one line, exit code 2."""


class ArminError(Exception):
    """A problem the user can fix (bad spec, bad value, bad file); never a bug in armin."""


class ConfigError(ArminError):
    """A configuration value or spec is malformed; the message names where and what is allowed."""


class OutOfMemory(ConfigError):
    """An allocation the run needs was refused (the model does not fit, or not within a trial's memory bound)."""
