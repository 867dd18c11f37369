"""Request values -> what to make, or one ApiError: a 4xx whose JSON body is {"error": "..."} in one line.

The same rules as `gancli generate`: indices below 10**9 (what a folder can name), seeds in [0, 2**128),
truncation psi in (0, 1], and the class rule of runtime/labels.py (image i of `class=3,7` gets 3 for even
i, 7 for odd; no class on a conditional model cycles through all of its classes).
"""
from __future__ import annotations

import hashlib
import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from gancli.runtime.errors import GenerateError
from gancli.runtime.labels import HTTP_PARAMETER, resolve_classes
from gancli.runtime.latents import MAX_SEED, NO_TRUNCATION, is_truncation
from gancli.runtime.serve.registry import ServedModel
from gancli.runtime.writer import MAX_IMAGES


class ApiError(Exception):
    """An answer other than 2xx, with its one-line reason."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class ImagesRequest(BaseModel):
    """The body of POST /v1/models/{name}/images: images start .. start+n-1 of `seed`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    n: StrictInt = Field(description="How many images (at most the server's --max-images).")
    seed: StrictInt = Field(0, description="As `gancli generate --seed`: image i depends on (seed, i) alone.")
    start: StrictInt = Field(0, description="The first index.")
    classes: str | StrictInt | list[str | StrictInt] | None = Field(
        None, alias="class", description="Class-conditional models: names or indices, as `--class`.")
    truncation: float = Field(NO_TRUNCATION, description="psi in (0, 1]: z' = psi z (1: off).")
    format: Literal["zip", "npz"] = Field("zip", description="zip: one PNG per image; npz: uint8 arrays.")


def model_named(models: dict[str, ServedModel], name: str) -> ServedModel:
    if name not in models:
        raise ApiError(404, f"no model {name!r} here; this server serves {', '.join(models)} (GET /v1/models)")
    return models[name]


def check_range(start: int, n: int, max_images: int) -> None:
    if not 1 <= n <= max_images:
        raise ApiError(400, f"n must be between 1 and {max_images:,} (this server's --max-images), not {n}")
    if start < 0 or start + n > MAX_IMAGES:
        what = f"index {start}" if n == 1 else f"indices {start} to {start + n - 1}"
        raise ApiError(400, f"{what}: image indices are 0 to {MAX_IMAGES - 1:,}")


CANONICAL_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")  # below 10**9, as a folder names it
CANONICAL_SEED = re.compile(r"0|[1-9][0-9]{0,38}")  # 2**128 has 39 digits


def parse_index(text: str) -> int:
    """An image index as a URL names it. One image has one URL: "42" only, never "042", "+42" or "4_2",
    which Python's int() takes and which would make caches keep the same pixels under several names."""
    if not CANONICAL_INDEX.fullmatch(text):
        raise ApiError(400, f"index {text}: image indices are 0 to {MAX_IMAGES - 1:,}, written in plain decimal "
                            f"(no sign, leading zeros, spaces or underscores)")
    return int(text)


def parse_seed(text: str) -> int:
    """A seed as a query names it: plain decimal, for the same reason as an index."""
    if not CANONICAL_SEED.fullmatch(text) or int(text) > MAX_SEED:
        raise ApiError(400, f"seed must be an integer between 0 and 2**128 - 1 written in plain decimal (no sign, "
                            f"leading zeros, spaces or underscores), not {text[:50]!r}")
    return int(text)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match is "*" or a list of entity tags (RFC 9110 13.1.2), compared weakly: W/"x" matches "x"."""
    wanted = etag.removeprefix("W/")
    return any(tag == "*" or tag.removeprefix("W/") == wanted
               for tag in (part.strip() for part in if_none_match.split(",")))


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ApiError(400, f"seed must be an integer between 0 and 2**128 - 1, not {seed}")


def check_truncation(truncation: float) -> None:
    if not is_truncation(truncation):
        raise ApiError(400, f"truncation must be in (0, 1] (1: off), not {truncation}")


def labels_for(model: ServedModel, classes: str | int | list | None, indices: np.ndarray) -> np.ndarray | None:
    """Each index's label by generate's class rule; None for an unconditional model."""
    try:
        plan = resolve_classes(model.session.metadata, classes, model.name, HTTP_PARAMETER)
    except GenerateError as e:
        raise ApiError(400, str(e)) from None
    return None if plan is None else plan.labels(indices)


def image_etag(model: ServedModel, index: int, seed: int, label: np.ndarray | None, truncation: float) -> str:
    """What the pixels depend on: the graph file and (seed, index, label, psi). Weak: the bytes of a PNG may
    change with the encoder's version, the pixels do not."""
    key = f"{model.sha256}/{index}/{seed}/{None if label is None else int(label[0])}/{truncation!r}"
    return f'W/"{hashlib.sha256(key.encode()).hexdigest()[:32]}"'
