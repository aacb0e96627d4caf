"""Exceptions with messages meant for users (the CLI prints them without a traceback)."""


class SaltsegError(Exception):
    """Base class: bad input or configuration, described in the message."""


class DataError(SaltsegError):
    """A TGS-format input (folder, CSV, PNG) is missing or malformed; the message names it."""


class ConfigError(SaltsegError):
    """A settings or recipe file is invalid; the message names the key."""
