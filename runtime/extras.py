"""Which install extra a command needs: `pip install gancli` generates, merges, serves and interpolates; train,
export and eval need torch and friends, which only `pip install 'gancli[train]'` brings. The Python API's functions
of those commands (gancli.train, train_config, export_generator, evaluate, truncation_sweep) check the same way.

Looked up with importlib's find_spec, which finds a module without importing it: the check costs no torch
import, and `gancli --help` stays light.
"""
from __future__ import annotations

from importlib.util import find_spec

from gancli import GancliError

TRAIN_EXTRA = "pip install 'gancli[train]'"
# the modules of the `train` extra (pyproject.toml) that train, export and eval import
TRAINING_MODULES = ("torch", "torchvision", "onnx", "onnxscript", "safetensors", "scipy", "matplotlib")
# the commands `pip install gancli` runs; every other one needs the train extra
LIGHT_COMMANDS = ("generate", "merge", "serve", "interpolate")


class MissingExtra(GancliError):
    """A command needs modules this install left out."""


def require_training_extra(command: str) -> None:
    """Raise one line naming what `gancli COMMAND` lacks and the install command that brings it."""
    missing = [name for name in TRAINING_MODULES if find_spec(name) is None]
    if missing:
        light = f"{', '.join(LIGHT_COMMANDS[:-1])} and {LIGHT_COMMANDS[-1]}"
        raise MissingExtra(f"gancli {command} needs {', '.join(missing)}, which `pip install gancli` leaves out "
                           f"(it runs {light} only); install them with {TRAIN_EXTRA}")
