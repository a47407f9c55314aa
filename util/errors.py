"""The project's exceptions.

Top-level scripts catch :class:`CTPix2PixError`, print its message and exit with status 1, so every
message must say which file or option is at fault and what is wrong with it.
"""


class CTPix2PixError(Exception):
    """Base class of every error the project raises on purpose."""


class DataError(CTPix2PixError, ValueError):
    """An input file or folder is missing, unreadable or inconsistent; the message names it."""


class ConfigError(CTPix2PixError, ValueError):
    """An option, or a combination of options, cannot work; the message says which and why."""


class OutputError(CTPix2PixError, OSError):
    """An output file could not be written (disk full, permissions); the message names it and
    says that the previous file, if any, is unchanged."""
