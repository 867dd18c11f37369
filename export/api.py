"""`gancli export`: load a generator artifact, write the asked-for formats, check parity, keep all or nothing.

Every file is written into a staging folder beside the output folder first; only when every file
passes parity are they renamed into place (same file system, so each rename is atomic). A failure
at any step (a full disk too: one ExportError line) removes the staging folder, so no exported file
is left behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from torch import nn

from gancli.export.errors import ExportError, ParityError
from gancli.export.int8 import export_int8_onnx
from gancli.export.onnx import DEFAULT_OPSET, check_opset, export_onnx
from gancli.export.parity import ParityReport, ParityResult, check_parity
from gancli.export.torchscript import export_torchscript
from gancli.export.wrapper import PRECISION_FP16, PRECISION_FP32, PRECISION_INT8
from gancli.gan.artifact import GeneratorSpec, load_generator, resolve_artifact_dir
from gancli.runtime.files import TEMP_MARK, process_alive, temp_target, write_text_atomic
from gancli.runtime.metadata import OUTPUT_FLOAT_NCHW, OUTPUT_UINT8_NHWC

FORMATS = ("onnx", "torchscript", "all")
INT8_FILE = "generator-int8-uint8.onnx"
DEFAULT_OUT_NAME = "export"  # default output folder, inside the artifact folder
PARITY_NAME = "parity.json"


@dataclass(frozen=True)
class Planned:
    """One file to export."""

    name: str
    format: str  # "onnx" or "torchscript"
    output_kind: str
    precision: str  # "fp32", "fp16" or "int8"


@dataclass
class ExportResult:
    out_dir: Path
    files: list[Path]  # exported models, then the parity report
    report: ParityReport


def plan_files(fmt: str, fp16: bool, int8: bool = False) -> list[Planned]:
    """File names and contents for a --format; --fp16 adds half-precision ONNX graphs, --int8 the
    int8 CPU serving graph."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not known; use one of {', '.join(FORMATS)}")
    for flag, wanted in (("--fp16", fp16), ("--int8", int8)):
        if wanted and fmt == "torchscript":
            raise ExportError(f"{flag} adds ONNX graphs; use it with --format onnx or all")
    planned = []
    if fmt in ("onnx", "all"):
        planned += [Planned("generator.onnx", "onnx", OUTPUT_FLOAT_NCHW, PRECISION_FP32),
                    Planned("generator-uint8.onnx", "onnx", OUTPUT_UINT8_NHWC, PRECISION_FP32)]
        if fp16:
            planned += [Planned("generator-fp16.onnx", "onnx", OUTPUT_FLOAT_NCHW, PRECISION_FP16),
                        Planned("generator-fp16-uint8.onnx", "onnx", OUTPUT_UINT8_NHWC, PRECISION_FP16)]
        if int8:
            planned.append(Planned(INT8_FILE, "onnx", OUTPUT_UINT8_NHWC, PRECISION_INT8))
    if fmt in ("torchscript", "all"):
        planned.append(Planned("generator.torchscript.pt", "torchscript", OUTPUT_FLOAT_NCHW, PRECISION_FP32))
    return planned


def export_generator(source: str | Path, fmt: str = "all", out_dir: str | Path | None = None,
                     opset: int = DEFAULT_OPSET, fp16: bool = False, int8: bool = False,
                     console: Console | None = None) -> ExportResult:
    """Export the generator at `source` (run directory or artifact folder) into `out_dir`.

    `out_dir` defaults to `export/` inside the artifact folder. Raises ArtifactError for a bad
    source, ExportError for bad options or an unwritable folder, ParityError when an exported file
    does not match eager G; in each case nothing is written.
    """
    planned = plan_files(fmt, fp16, int8)
    if any(p.format == "onnx" for p in planned):
        check_opset(opset)  # before the slow part
    G, spec = load_generator(source)
    out_dir = Path(out_dir) if out_dir is not None else resolve_artifact_dir(source) / DEFAULT_OUT_NAME
    staging = make_staging_dir(out_dir)
    try:
        with staging_writes(out_dir):
            staged = [write_file(G, spec, p, staging / p.name, opset) for p in planned]
        try:
            report = check_parity(G, staged)
        except ParityError as e:
            raise ParityError(f"{e}; nothing was written to {out_dir}") from e
        with staging_writes(out_dir):
            write_text_atomic(staging / PARITY_NAME, export_record(report, spec))
        files = move_into_place([*staged, staging / PARITY_NAME], out_dir)
        remove_stale_files(out_dir, {p.name for p in planned})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = ExportResult(out_dir, files, report)
    if console is not None:
        print_summary(result, console)
    return result


def make_staging_dir(out_dir: Path) -> Path:
    """A hidden temp folder beside `out_dir` (`.NAME.tmp-PID-XXXX`); fails early, before any work, if the
    place is not writable. Staging folders that killed exports left there are removed first."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file; pass a folder")
    if out_dir.is_dir() and not os.access(out_dir, os.W_OK):
        raise ExportError(f"--out {out_dir} is not writable; pass a folder you can write to")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_staging_dirs(out_dir)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{TEMP_MARK}{os.getpid()}-", dir=out_dir.parent))
    except OSError as e:
        raise ExportError(f"cannot write beside --out {out_dir} ({e.strerror}); pass a folder you can write to") from e


def remove_dead_staging_dirs(out_dir: Path) -> None:
    """Delete the staging folders of exports into `out_dir` whose process is gone (killed, or aborted by
    a full disk); a live process's folder is left alone."""
    for entry in out_dir.parent.iterdir():
        temp = temp_target(entry.name)
        if temp and temp[0] == out_dir.name and entry.is_dir() and not process_alive(temp[1]):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staging_writes(out_dir: Path) -> Iterator[None]:
    """A file that cannot be written into the staging folder (a full disk) is one ExportError line; the
    caller then removes the staging folder, so nothing is left behind and --out is untouched."""
    try:
        yield
    except OSError as e:
        raise ExportError(f"cannot write the exported files beside --out {out_dir} ({e.strerror or e}); nothing was "
                          f"written to {out_dir}; free some space or pass another --out") from e


def write_file(G: nn.Module, spec: GeneratorSpec, planned: Planned, path: Path, opset: int) -> Path:
    fp16 = planned.precision == PRECISION_FP16
    if planned.precision == PRECISION_INT8:
        export_int8_onnx(G, spec, path, opset)
    elif planned.format == "onnx":
        export_onnx(G, spec, path, planned.output_kind, fp16, opset)
    else:
        export_torchscript(G, spec, path, planned.output_kind, fp16)
    return path


def export_record(report: ParityReport, spec: GeneratorSpec) -> str:
    """parity.json: the folder's record of this export, its file list (the parity rows) and the one weights
    digest they all carry; the runtime takes from a model folder only a graph this record lists."""
    return json.dumps({**json.loads(report.to_json()), "weights_sha256": spec.weights_sha256}, indent=2)


def remove_stale_files(out_dir: Path, written: set[str]) -> None:
    """The files an earlier export left in `out_dir` that this one did not write (a re-export with fewer
    formats): left there, one folder would mix two models."""
    every = {p.name for p in plan_files("all", fp16=True, int8=True)}
    for name in sorted(every - written):
        try:
            (out_dir / name).unlink(missing_ok=True)
        except OSError as e:
            raise ExportError(f"cannot remove {out_dir / name}, left by an earlier export ({e.strerror}); delete it: "
                              f"the new export's parity.json does not list it") from e


def move_into_place(staged: list[Path], out_dir: Path) -> list[Path]:
    """Rename each staged file into `out_dir`; if one rename fails, take back the ones already moved."""
    moved: list[Path] = []
    try:
        out_dir.mkdir(exist_ok=True)
        for path in staged:
            os.replace(path, out_dir / path.name)
            moved.append(out_dir / path.name)
    except OSError as e:
        for path in moved:
            path.unlink(missing_ok=True)
        raise ExportError(f"cannot write into --out {out_dir} ({e.strerror}); pass a folder you can write to") from e
    return moved


def print_summary(result: ExportResult, console: Console) -> None:
    report = result.report
    labels = f", labels of {report.classes_checked} of {report.classes} classes" if report.classes else ""
    table = Table(title=f"parity with eager PyTorch: batches {report.batch_sizes}, seeds {report.seeds}{labels}")
    table.add_column("file", no_wrap=True)
    table.add_column("runtime", no_wrap=True)
    table.add_column("max error", justify="right")
    table.add_column("bar", justify="right")
    for r in report.results:
        table.add_row(r.file, r.runtime, *error_and_bar(r))
    console.print(table)
    console.print(f"wrote {len(result.files)} files to {result.out_dir}")


def error_and_bar(r: ParityResult) -> tuple[str, str]:
    if r.mean_bar is not None:  # int8: a bar on the distribution of errors
        return f"mean {r.mean_error:.2f}, p99 {r.p99_error:g}", f"mean {r.mean_bar:g}, p99 {r.p99_bar:g}"
    return format_error(r.max_error, r.output_kind), format_error(r.bar, r.output_kind)


def format_error(value: float, output_kind: str) -> str:
    """uint8 graphs are off by whole levels; float graphs by small absolute amounts."""
    if output_kind == OUTPUT_UINT8_NHWC:
        return f"{value:g} level" + ("" if value == 1 else "s")
    return f"{value:.1e}"
