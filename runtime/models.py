"""Which ONNX file a model name, folder or path means: the serving graph of a precision.

A shipped model is a folder of models/ (default cats-dcgan) holding several graphs of one generator;
a name or folder resolves to the uint8 serving graph of the precision asked for (only bytes leave it),
while an .onnx path is taken as it is and decides its own precision. A bare name is always a shipped model's;
a folder or file needs a path (./NAME, a separator, or .onnx: gancli.models.names_a_path).
"""
from __future__ import annotations

import json
from pathlib import Path

from gancli.models import models_dir, names_a_path
from gancli.runtime.errors import GenerateError
from gancli.runtime.metadata import ModelMetadata
from gancli.runtime.session import GeneratorSession

MODELS_DIR = models_dir()
DEFAULT_MODEL = "cats-dcgan"
# What a model name or folder resolves to, per --precision; the uint8 graph first: only bytes leave it.
SERVING_FILES = {
    "fp32": ("generator-uint8.onnx", "generator.onnx"),
    "int8": ("generator-int8-uint8.onnx",),  # `gancli export --int8`: for the CPU, with its own parity bar
}
DEFAULT_PRECISION = "fp32"
EXPORT_RECORD = "parity.json"  # `gancli export`'s record of the files it wrote and their weights digest
# `gancli eval --out` files beside a shipped model's graphs (scripts/ship_models.sh), one per precision
EVAL_FILES = {"fp32": "eval.json", "int8": "eval-int8.json"}
# On the CPU, generate serves a folder's int8 graph by default where the folder's own evals score it within this
# distance (FID; FCD where no FID) of the fp32 graph: the same images to the metric, 1.4-1.6x faster on the DCGANs.
INT8_DEFAULT_TOLERANCE = 0.5


def resolve_model(model: str | Path | None, precision: str | None = None) -> Path:
    """The graph `model` means: a shipped model's name (default cats-dcgan) takes the serving graph of `precision`
    (default fp32) in models/<name>/, whatever the working directory holds; a path (names_a_path) is an .onnx file,
    taken as it is, or a model folder, whose serving graph is taken."""
    model = DEFAULT_MODEL if model is None else model
    if precision is not None and precision not in SERVING_FILES:
        raise GenerateError(f"--precision {precision!r} is not known; use one of {', '.join(SERVING_FILES)}")
    if not names_a_path(model):
        graph = serving_graph(MODELS_DIR / model, precision)
        if graph is None:
            # generators only: models/ also holds the MNIST classifier that eval uses
            shipped = sorted(p.name for p in MODELS_DIR.iterdir() if any(p.glob("generator*.onnx"))) \
                if MODELS_DIR.is_dir() else []
            raise GenerateError(f"no model {model!r}: no shipped model has that name (shipped models: "
                                f"{', '.join(shipped) or 'none yet'}); a folder or file needs a path, such as ./{model}")
        return graph
    path = Path(model)
    if path.suffix == ".onnx" or path.is_file():
        if not path.is_file():
            raise GenerateError(f"model file {path} not found; pass an exported .onnx file or a model name from {MODELS_DIR}")
        return path
    if not path.is_dir():
        raise GenerateError(f"model folder {path} not found; pass an exported model folder, an .onnx file or a "
                            f"shipped model name")
    graph = serving_graph(path, precision)
    if graph is None:
        candidates = " or ".join(SERVING_FILES[precision or DEFAULT_PRECISION])
        raise GenerateError(f"model folder {path} has no {candidates}; pass a folder written by `gancli export`, "
                            f"or an .onnx file")
    return graph


def serving_graph(folder: Path, precision: str | None) -> Path | None:
    """The serving graph of `precision` in a model folder, the uint8 one first; None where it has none (one line
    where int8 was asked for and the folder has only other graphs)."""
    candidates = SERVING_FILES[precision or DEFAULT_PRECISION]
    for name in candidates:
        if (folder / name).is_file():
            check_listed(folder / name)
            return folder / name
    if folder.is_dir() and precision == "int8":
        raise GenerateError(f"{folder} has no int8 graph ({candidates[0]}); make one with `gancli export --int8`, "
                            f"or drop --precision int8")
    return None


def export_record(folder: Path) -> dict | None:
    """The folder's parity.json (what `gancli export` wrote there), or None where there is none or it is not one."""
    try:
        record = json.loads((folder / EXPORT_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("results"), list) else None


def listed(path: Path) -> bool:
    """Whether the export record of the graph's folder lists it (True where the folder has no record)."""
    record = export_record(path.parent)
    return record is None or path.name in {row.get("file") for row in record["results"] if isinstance(row, dict)}


def check_listed(path: Path) -> None:
    """A graph in a model folder is the folder's only when the export's record lists it: one left beside a later
    export of fewer formats (of other weights) is refused, not taken."""
    if not listed(path):
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


def cpu_default_session(model: str | Path | None, path: Path, session: GeneratorSession, precision: str | None,
                        threads: int) -> tuple[Path, GeneratorSession]:
    """The graph, and a session of it, to serve for `model` (resolved to `path`, opened as `session`): where no
    precision was asked for, `model` names a model folder (not an .onnx file) and the session runs on the CPU, the
    folder's int8 graph when cpu_default_graph takes it and it holds the same weights, which must be those the
    folder's export recorded (check_record); else `path` and `session`."""
    if precision is not None or path == Path(model or "") or session.device != "cpu":
        return path, session
    faster = cpu_default_graph(path, session.metadata.weights_sha256)
    if faster == path:
        return path, session
    int8 = GeneratorSession(faster, device="cpu", threads=threads)
    if int8.metadata.weights_sha256 != session.metadata.weights_sha256:
        return path, session
    check_record(int8.metadata, faster)
    return faster, int8


def cpu_default_graph(path: Path, weights_sha256: str) -> Path:
    """The graph generate serves on the CPU when no --precision is given, for the fp32 graph `path` (of weights
    `weights_sha256`) of a model folder: the folder's int8 graph where its evals measured both graphs of these
    weights alike (int8_measured_alike), else `path`."""
    int8 = path.parent / SERVING_FILES["int8"][0]
    if not int8.is_file() or not listed(int8):
        return path
    return int8 if int8_measured_alike(path, int8, weights_sha256) else path


def int8_measured_alike(fp32: Path, int8: Path, weights_sha256: str) -> bool:
    """Whether the folder's eval.json and eval-int8.json score these two graphs (by file name and precision) of
    these weights, with the same seed and number of images, and put them within INT8_DEFAULT_TOLERANCE."""
    evals = [eval_record(fp32.parent / EVAL_FILES[precision], graph.name, precision)
             for precision, graph in (("fp32", fp32), ("int8", int8))]
    if None in evals:
        return False
    scored = [(e["model"]["weights_sha256"], e["model"]["seed"], e["counts"]["generated"]) for e in evals]
    if scored[0] != scored[1] or scored[0][0] != weights_sha256:
        return False
    for metric in ("FID", "FCD"):
        values = [distance(e, metric) for e in evals]
        if None not in values:
            return abs(values[0] - values[1]) <= INT8_DEFAULT_TOLERANCE
    return False


def eval_record(path: Path, graph: str, precision: str) -> dict | None:
    """The eval JSON at `path` when it scored `graph` of `precision` untruncated; None otherwise (absent, foreign,
    of another graph)."""
    try:
        record = json.loads(path.read_text())
        model, counts = record["model"], record["counts"]
        ok = (Path(model["path"]).name == graph and model["precision"] == precision
              and model.get("truncation_psi", 1.0) == 1.0 and isinstance(counts["generated"], int))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if ok else None


def distance(record: dict, metric: str) -> float | None:
    """The generated images' `metric` score in an eval record, None where it has none."""
    for score in record.get("scores", []):
        if isinstance(score, dict) and score.get("metric") == metric:
            value = (score.get("generated") or {}).get("value")
            return float(value) if isinstance(value, (int, float)) else None
    return None

