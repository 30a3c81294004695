"""The errors a user can fix (defined in ``foundation.errors``, which every layer may raise)."""

from ..foundation.errors import ConfigError, DataError, DataWarning

__all__ = ["ConfigError", "DataError", "DataWarning"]
