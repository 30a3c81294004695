"""Errors a user can fix: each message names the problem and what to do about it."""


class ConfigError(ValueError):
    """A configuration value or key is wrong (unknown key, value out of range, contradictory options)."""


class DataError(ValueError):
    """Input data cannot be used as given (missing file or column, nothing left after filtering, ...)."""


class DataWarning(UserWarning):
    """Input data is used, but something in it is likely a mistake (items without text, users too short to
    evaluate, ...). A load from the data cache says these again."""
