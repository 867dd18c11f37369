"""Errors the CLI turns into one line and a non-zero exit."""


class GenerateError(Exception):
    """Bad input to generation (model, count, shard, output folder) or a failure writing images."""
