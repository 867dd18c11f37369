"""Which ONNX file a model name, folder or path means: the serving graph of a precision.

A shipped model is a folder of models/ (default cats-dcgan) holding several graphs of one generator;
a name or folder resolves to the uint8 serving graph of the precision asked for (only bytes leave it),
while an .onnx path is taken as it is and decides its own precision.
"""
from __future__ import annotations

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
    folder = path if path.is_dir() else MODELS_DIR / str(model)
    candidates = SERVING_FILES[precision or DEFAULT_PRECISION]
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    if folder.is_dir() and precision == "int8":
        raise GenerateError(f"{folder} has no int8 graph ({candidates[0]}); make one with `gancli export --int8`, "
                            f"or drop --precision int8")
    # generators only: models/ also holds the MNIST classifier that eval uses
    shipped = sorted(p.name for p in MODELS_DIR.iterdir() if any(p.glob("generator*.onnx"))) if MODELS_DIR.is_dir() else []
    names = ", ".join(shipped) or "none yet"
    raise GenerateError(f"no model {str(model)!r}: {folder} has no {' or '.join(candidates)} "
                        f"(shipped models: {names}); pass --model FILE.onnx from `gancli export`")


def check_precision(meta: ModelMetadata, precision: str | None, path: Path) -> None:
    """A file passed by path decides its own precision; asking for another one is a mistake, not a cast."""
    if precision is not None and meta.precision != precision:
        raise GenerateError(f"--precision {precision}: {path} is a {meta.precision} graph; drop --precision "
                            f"or pass a model name, whose {precision} graph is then taken")
