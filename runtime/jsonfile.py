"""Reading back the versioned files gancli writes (config.json, generator.json, classifier.json, a checkpoint's
header, a model's metadata): `read_json_object` and `check_format`, the one check of a file's format and version.

A file that cannot be used fails with one line naming it, what is wrong (missing, unreadable, empty,
truncated, not a JSON object, a field of the wrong type) and the way out, never a traceback: each
reader passes the error class and the way out that fit its file. Torch-free.
"""
from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

from gancli.runtime.files import read_regular


def read_json_object(path: Path, what: str, error: type[Exception], way_out: str) -> dict[str, Any]:
    """The JSON object in `path` (`what` says what it should hold, e.g. "a gancli training config")."""
    try:
        raw = read_regular(path)
    except OSError as e:
        raise error(f"cannot read {path} ({e.strerror or e}); {way_out}") from e
    if not raw.strip():
        raise error(f"{path} is empty; {way_out}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{path} is not a text file, so not {what}; {way_out}") from e
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}: truncated or "
                    f"damaged); {way_out}") from e
    if not isinstance(data, dict):
        raise error(f"{path} holds a JSON {json_type(data)}, not {what}; {way_out}")
    return data


def check_format(data: dict[str, Any], source: str, fmt: str | None, newest: int, error: type[Exception],
                 way_out: str, what: str, *, legacy: bool = False) -> int:
    """The format version of `data` (what a file of gancli holds): its "format" must be `fmt` (None: the file
    names none), or absent where `legacy` (a file of an older gancli); its "format_version" (0 when absent) an
    integer no newer than `newest`. Otherwise one `error` line naming `source`, what is wrong and the way out."""
    found = data.get("format")
    if found != fmt and not (legacy and found is None):
        raise error(f"{source} is not {what} (another program's file?); {way_out}")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise error(f"{source} has format version {json.dumps(version)}, not an integer; {way_out}")
    if version > newest:
        raise error(f"{source} was written by a newer gancli ({what}, format {version}; this gancli reads up to "
                    f"{newest}); upgrade gancli to read it")
    return version


def json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def wrong_field(cls: type, data: dict[str, Any]) -> str | None:
    """None when every known field of dataclass `cls` in `data` has a value of its annotated type, else
    "NAME is VALUE, not TYPE" for the first that does not (JSON lists stand for tuples)."""
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if name in hints and not _matches(value, hints[name]):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            return f"{name} is {shown}, not {_describe(hints[name])}"
    return None


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    return True  # a type JSON cannot express: left to the code that uses it


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in args)
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "an object"}
    if hint in names:
        return names[hint]
    if origin is dict:
        return "an object"
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} values"
    return "a list"
