"""The generators this project trained and ships, installed as package data of `gancli.models`.

Found through importlib.resources, so a wheel install and an editable checkout resolve the same
folders. Torch-free: the runtime imports it.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def models_dir() -> Path:
    """The folder holding one sub-folder per shipped model."""
    return Path(str(files(__name__)))


def shipped_generators() -> list[str]:
    """Names of the shipped generators (folders with a generator.json), sorted."""
    return sorted(p.name for p in models_dir().iterdir() if (p / "generator.json").is_file())
