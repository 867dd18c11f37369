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
