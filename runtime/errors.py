"""Errors the CLI turns into one line and a non-zero exit."""

from gancli import GancliError


class GenerateError(GancliError):
    """Bad input to generation (model, count, shard, output folder) or a failure writing images."""
