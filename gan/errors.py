"""Errors the CLI turns into one line and a non-zero exit; anything else is a bug and keeps its traceback."""

from gancli import GancliError


class GanError(GancliError):
    """Base of every expected failure in gan/: the message names the problem and the fix."""


class DataError(GanError):
    """A data set is missing, unreadable or empty."""


class ArtifactError(GanError):
    """A generator artifact or checkpoint is missing, corrupt or inconsistent."""


class TrainingDiverged(GanError):
    """A loss became NaN or inf; the last good checkpoint is kept."""


class ConfigError(GanError, ValueError):
    """An option has a value that cannot work."""


class EvalError(GanError):
    """Images or feature-network weights that `gancli eval` cannot score."""


class TrainingStopped(GanError):
    """SIGTERM, SIGUSR1 or SIGINT stopped training after a step; the checkpoint holds that step.

    `exit_code` is the shell's code for death by that signal (128 + its number), for job scripts
    that tell a preemption from a failure."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


class RunWriteError(GanError):
    """A file of a training run could not be written (a full disk); the previous one is kept."""
