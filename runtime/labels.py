"""Which class each image of a class-conditional model gets: a function of its index and the class list only.

Image i gets `requested[i % len(requested)]`, where `requested` is every class of the model in order
(the default) or the classes asked for with `--class` (names or indices, in the order given). So,
like its z (runtime/latents.py), the label of image i does not depend on the batch size, the shard,
a resume or the device, and the requested classes come out evenly (within one image).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gancli.runtime.errors import GenerateError
from gancli.runtime.metadata import ModelMetadata

ClassesArg = str | int | Sequence[str | int] | None
_SHOWN_NAMES = 12  # class names listed in an error message before "..."


@dataclass(frozen=True)
class ClassOption:
    """How the user gave the classes, so that an error speaks their language: a flag on the command line,
    a parameter of an HTTP request."""

    name: str  # "--class"
    separator: str  # between the name and its value: "--class 3", "class=3"
    drop: str  # how to give no classes at all

    def given(self, value: object) -> str:
        return f"{self.name}{self.separator}{value}"


FLAG = ClassOption("--class", " ", "drop --class, or use a class-conditional model (gancli train --conditional)")
HTTP_PARAMETER = ClassOption("class", "=", "drop the class parameter, or ask a class-conditional model")


@dataclass(frozen=True)
class ClassPlan:
    """The classes images cycle through: `requested` are indices into the model's `names`."""

    requested: tuple[int, ...]
    names: tuple[str, ...]

    def labels(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """int64 label of each image index: requested[i % len(requested)]."""
        cycle = np.asarray(self.requested, dtype=np.int64)
        return cycle[np.asarray(indices, dtype=np.int64) % len(cycle)]

    @property
    def requested_names(self) -> list[str]:
        return [self.names[label] for label in self.requested]

    @property
    def is_all(self) -> bool:
        """Every class of the model, in its own order (no --class)."""
        return self.requested == tuple(range(len(self.names)))


def split_classes(classes: ClassesArg, option: ClassOption = FLAG) -> list[str | int] | None:
    """`--class` as given -> its items: "3,7" -> ["3", "7"]; 7 -> [7]; ["cat", 2] as it is; None stays None."""
    if classes is None:
        return None
    if isinstance(classes, str):
        items: list[str | int] = [part.strip() for part in classes.split(",")]
    elif isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        items = [int(classes)]
    elif isinstance(classes, Sequence) or isinstance(classes, np.ndarray):
        items = [item.strip() if isinstance(item, str) else item for item in classes]
    else:
        raise GenerateError(f"{option.given(repr(classes))} is not a class list; pass names or indices, "
                            f"e.g. {option.given('3,7')}")
    if not items or any(item == "" for item in items):
        raise GenerateError(f"{option.given(repr(format_arg(classes)))} names no class (or an empty one); "
                            f"pass class names or indices separated by commas, e.g. {option.given('3,7')}")
    return items


def format_arg(classes: ClassesArg) -> str:
    if isinstance(classes, str):
        return classes
    if isinstance(classes, (int, np.integer)):
        return str(classes)
    return ",".join(str(item) for item in classes)


def describe_classes(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN_NAMES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN_NAMES else "")


def resolve_classes(meta: ModelMetadata, classes: ClassesArg, source: str | Path = "the model",
                    option: ClassOption = FLAG) -> ClassPlan | None:
    """The class plan of a run: None for an unconditional model (which takes no --class), every class
    for a conditional one without --class, else the classes asked for.

    An item that is a string is a class name first, else an index ("7" on MNIST is both); an int is an
    index. A class the model lacks, a repeated class or --class on an unconditional model raises a
    one-line GenerateError.
    """
    items = split_classes(classes, option)
    if not meta.conditional:
        if items is not None:
            raise GenerateError(f"{option.given(format_arg(classes))}: {source} is an unconditional model (it has "
                                f"no classes); {option.drop}")
        return None
    names = tuple(meta.class_names)
    if items is None:
        return ClassPlan(tuple(range(len(names))), names)
    requested: list[int] = []
    for item in items:
        label = class_index(item, names)
        if label is None:
            raise GenerateError(f"{option.given(item)}: {source} has no such class; its classes are "
                                f"{describe_classes(names)} (or indices 0 to {len(names) - 1})")
        if label in requested:
            raise GenerateError(f"{option.given(format_arg(classes))} lists class {names[label]!r} twice; "
                                f"list each class once")
        requested.append(label)
    return ClassPlan(tuple(requested), names)


def class_index(item: str | int, names: tuple[str, ...]) -> int | None:
    """A name (for strings, first) or an index -> the class index; None when it is neither."""
    if isinstance(item, str):
        if item in names:
            return names.index(item)
        try:
            item = int(item)
        except ValueError:
            return None
    if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
        return None
    return int(item) if 0 <= item < len(names) else None
