"""Errors the CLI turns into one line and a non-zero exit."""

from gancli import GancliError


class GenerateError(GancliError):
    """Bad input to generation (model, count, shard, output folder) or a failure writing images."""


class NotARegularFile(GancliError):
    """An output path that holds a device node, FIFO, socket or folder: gancli writes only regular files
    (runtime/files.py), so it is refused before anything is written."""


class GenerateStopped(GenerateError):
    """SIGTERM stopped generation cleanly: every finished image is kept and listed in the manifest.

    `exit_code` is the shell's code for death by that signal (128 + its number), for job scripts that
    tell a preemption from a failure (the CLI, like `gancli train`'s, exits 1 with the one line)."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
