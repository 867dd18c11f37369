"""Which ONNX file a model name, folder or path means: the serving graph of a precision.

A shipped model is a folder of models/ (default cats-dcgan) holding several graphs of one generator;
a name or folder resolves to the uint8 serving graph of the precision asked for (only bytes leave it),
while an .onnx path is taken as it is and decides its own precision.
"""
from __future__ import annotations

import json
from pathlib import Path

from gancli.models import models_dir
from gancli.runtime.errors import GenerateError
from gancli.runtime.metadata import ModelMetadata

MODELS_DIR = models_dir()
DEFAULT_MODEL = "cats-dcgan"
# What a model name or folder resolves to, per --precision; the uint8 graph first: only bytes leave it.
SERVING_FILES = {
    "fp32": ("generator-uint8.onnx", "generator.onnx"),
    "int8": ("generator-int8-uint8.onnx",),  # `gancli export --int8`: for the CPU, with its own parity bar
}
DEFAULT_PRECISION = "fp32"
EXPORT_RECORD = "parity.json"  # `gancli export`'s record of the files it wrote and their weights digest


def resolve_model(model: str | Path | None, precision: str | None = None) -> Path:
    """A path to an .onnx file, or a name of a shipped model in models/<name>/ (default cats-dcgan),
    whose serving graph of `precision` (default fp32) is taken."""
    model = DEFAULT_MODEL if model is None else model
    if precision is not None and precision not in SERVING_FILES:
        raise GenerateError(f"--precision {precision!r} is not known; use one of {', '.join(SERVING_FILES)}")
    path = Path(model)
    if path.suffix == ".onnx" or path.is_file():
        if not path.is_file():
            raise GenerateError(f"model file {path} not found; pass an exported .onnx file or a model name from {MODELS_DIR}")
        return path
    if not path.is_dir() and (len(path.parts) != 1 or str(model).startswith(".")):  # a path, not a shipped name
        raise GenerateError(f"model folder {path} not found; pass an exported model folder, an .onnx file or a "
                            f"shipped model name")
    folder = path if path.is_dir() else MODELS_DIR / str(model)
    candidates = SERVING_FILES[precision or DEFAULT_PRECISION]
    for name in candidates:
        if (folder / name).is_file():
            check_listed(folder / name)
            return folder / name
    if folder.is_dir() and precision == "int8":
        raise GenerateError(f"{folder} has no int8 graph ({candidates[0]}); make one with `gancli export --int8`, "
                            f"or drop --precision int8")
    # generators only: models/ also holds the MNIST classifier that eval uses
    shipped = sorted(p.name for p in MODELS_DIR.iterdir() if any(p.glob("generator*.onnx"))) if MODELS_DIR.is_dir() else []
    names = ", ".join(shipped) or "none yet"
    raise GenerateError(f"no model {str(model)!r}: {folder} has no {' or '.join(candidates)} "
                        f"(shipped models: {names}); pass --model FILE.onnx from `gancli export`")


def export_record(folder: Path) -> dict | None:
    """The folder's parity.json (what `gancli export` wrote there), or None where there is none or it is not one."""
    try:
        record = json.loads((folder / EXPORT_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("results"), list) else None


def check_listed(path: Path) -> None:
    """A graph in a model folder is the folder's only when the export's record lists it: one left beside a later
    export of fewer formats (of other weights) is refused, not taken."""
    record = export_record(path.parent)
    if record is not None and path.name not in {row.get("file") for row in record["results"] if isinstance(row, dict)}:
        raise GenerateError(f"{path} is not among the files of the export in {path.parent} ({EXPORT_RECORD}): it was "
                            f"left by an earlier export, maybe of other weights; export again with the format you want "
                            f"(`gancli export` with --int8 for the int8 graph), or delete it")


def check_record(meta: ModelMetadata, path: Path) -> None:
    """The graph's weights are those the folder's export recorded (parity.json's weights_sha256), if it did."""
    record = export_record(Path(path).parent)
    digest = record.get("weights_sha256") if record is not None else None
    if digest and meta.weights_sha256 and digest != meta.weights_sha256:
        raise GenerateError(f"{path} carries other weights (sha256 {meta.weights_sha256[:12]}) than the export in "
                            f"{Path(path).parent} ({EXPORT_RECORD}: {digest[:12]}): it was left by an earlier export; "
                            f"export again, or delete it")


def check_precision(meta: ModelMetadata, precision: str | None, path: Path) -> None:
    """A file passed by path decides its own precision; asking for another one is a mistake, not a cast. The
    file's weights must be those of its folder's export (check_record)."""
    check_record(meta, path)
    if precision is not None and meta.precision != precision:
        raise GenerateError(f"--precision {precision}: {path} is a {meta.precision} graph; drop --precision "
                            f"or pass a model name, whose {precision} graph is then taken")
