"""Exceptions with messages meant for users (the CLI prints them without a traceback)."""


class SaltsegError(Exception):
    """Base class: bad input or configuration, described in the message."""


class DataError(SaltsegError):
    """A TGS-format input (folder, CSV, PNG) is missing or malformed; the message names it."""


class ConfigError(SaltsegError):
    """A settings or recipe file is invalid; the message names the key."""


class OutputError(SaltsegError):
    """An output cannot be written (no space left, I/O error, a file where a folder must
    be, a file another run holds); the message names the path. The previous output is kept."""


class DataWarning(UserWarning):
    """An input was accepted after a conversion the user should know about (16-bit tile,
    alpha channel, mask values other than 0 and the maximum)."""
