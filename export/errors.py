"""Errors the CLI turns into one line and a non-zero exit."""

from gancli import GancliError


class ExportError(GancliError):
    """The source cannot be exported, or the output cannot be written."""


class ParityError(ExportError):
    """An exported model does not compute what the eager generator computes; nothing was kept."""
