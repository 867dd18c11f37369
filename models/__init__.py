"""The generators this project trained and ships, installed as package data of `gancli.models`.

Found through importlib.resources, so a wheel install and an editable checkout resolve the same
folders. Torch-free: the runtime imports it.
"""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path, PurePath


def models_dir() -> Path:
    """The folder holding one sub-folder per shipped model."""
    return Path(str(files(__name__)))


def shipped_generators() -> list[str]:
    """Names of the shipped generators (folders with a generator.json), sorted."""
    return sorted(p.name for p in models_dir().iterdir() if (p / "generator.json").is_file())


def names_a_path(model: str | PurePath) -> bool:
    """Whether `model` (what --model or --init-from was given) is a path rather than a shipped model's name: a
    Path, or text with a path separator, beginning with "." or ending in .onnx (./cats-dcgan, runs/00003/export,
    walk.onnx). A bare name is always the shipped model: a folder of the working directory that shares it must
    not replace it unnoticed."""
    if isinstance(model, PurePath):
        return True
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    return model.startswith(".") or model.endswith(".onnx") or any(sep in model for sep in separators)
