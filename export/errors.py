"""Errors the CLI turns into one line and a non-zero exit."""


class ExportError(Exception):
    """The source cannot be exported, or the output cannot be written."""


class ParityError(ExportError):
    """An exported model does not compute what the eager generator computes; nothing was kept."""
