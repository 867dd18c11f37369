"""Parity: does an exported file compute what the eager generator computes?

One function, `check_parity`, used by `gancli export` and by the tests (timm's check_forward).
Each file is run on fresh seeded z at several batch sizes, in TorchScript or in onnxruntime (CPU,
plus CUDA when a GPU is there), and compared with eager PyTorch in float32 on the CPU. The file's
own metadata says what it outputs and in which precision, which picks the bar it must meet. A
class-conditional generator gets labels that cycle through its classes, continuing from batch to
batch, so every class is checked (any number up to the 792 images of the default checks).
"""
from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from gancli.export.errors import ExportError, ParityError
from gancli.export.onnx import read_metadata as read_onnx_metadata
from gancli.export.torchscript import load_torchscript
from gancli.export.wrapper import PRECISION_FP16, PRECISION_INT8
from gancli.runtime.metadata import INPUT_NAME, LABEL_NAME, OUTPUT_UINT8_NHWC, ModelMetadata
from gancli.runtime.pixels import to_levels
from gancli.runtime.session import open_session

BATCH_SIZES = (1, 7, 256)
SEEDS = (0, 1, 2)
FP32_MAX_ABS_ERROR = 1e-4
FP16_MAX_ABS_ERROR = 2e-2
# A uint8 graph rounds the same values eager rounds; float error can tip a pixel over one .5 boundary.
UINT8_MAX_LEVELS = 1
# An int8 graph moves every pixel a little, so its bar is on the distribution of errors, in levels:
# about what saving the same images as a quality-90 JPEG does (mean 1.3-2.3, 99th percentile 9 on
# the shipped generators). Whether image quality changed is measured by `gancli eval` on the file.
INT8_MEAN_LEVELS = 1.5
INT8_P99_LEVELS = 12

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
# TF32 would make the CUDA EP's float32 convolutions ~1e-3 off; parity checks the float32 graph itself.
PROVIDER_OPTIONS = {CUDA_EP: {"use_tf32": "0"}}
RUNTIME_NAMES = {CPU_EP: "onnxruntime-cpu", CUDA_EP: "onnxruntime-cuda"}

Runner = Callable[[np.ndarray, np.ndarray | None], np.ndarray]  # (z, labels or None) -> output


@dataclass
class ParityResult:
    file: str
    runtime: str  # "torchscript", "onnxruntime-cpu" or "onnxruntime-cuda"
    output_kind: str
    precision: str
    max_error: float  # float outputs: max abs error; uint8 outputs: max difference in levels
    bar: float
    # int8 graphs: mean and 99th percentile of the error in levels, and their bars
    mean_error: float | None = None
    p99_error: float | None = None
    mean_bar: float | None = None
    p99_bar: float | None = None

    @property
    def passed(self) -> bool:
        # comparisons are False for NaN, so a NaN error fails
        ok = self.max_error <= self.bar
        if self.mean_bar is not None:
            ok = ok and self.mean_error <= self.mean_bar and self.p99_error <= self.p99_bar
        return ok

    def describe_error(self) -> str:
        if self.mean_bar is None:
            return f"off by {self.max_error:.3g}, over the bar {self.bar:.3g}"
        return (f"off by {self.mean_error:.2f} levels on average and {self.p99_error:g} at the 99th percentile, "
                f"over the bars {self.mean_bar:g} and {self.p99_bar:g}")


@dataclass
class ParityReport:
    batch_sizes: list[int]
    seeds: list[int]
    results: list[ParityResult] = field(default_factory=list)
    classes: int = 0  # a conditional generator's number of classes (0: unconditional)
    classes_checked: int = 0  # how many of them the checks fed as labels

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_json(self) -> str:
        data = asdict(self)
        for row, result in zip(data["results"], self.results):
            row["passed"] = result.passed
        data["passed"] = self.passed
        return json.dumps(data, indent=2)


@dataclass
class Check:
    """One exported file in one runtime."""

    path: Path
    meta: ModelMetadata
    runtime: str
    run: Runner
    worst: float = 0.0
    errors: list[np.ndarray] = field(default_factory=list)  # int8 graphs: every pixel's error in levels


def check_parity(G: nn.Module, files: Sequence[Path], batch_sizes: Sequence[int] = BATCH_SIZES,
                 seeds: Sequence[int] = SEEDS, providers: Sequence[str] | None = None) -> ParityReport:
    """Compare every exported file with eager G; raise ParityError naming the worst file if any is over its bar.

    `files` are ONNX (`.onnx`) or TorchScript (`.pt`) files written by this package; `providers`
    defaults to the CPU EP plus the CUDA EP when torch sees a GPU.
    """
    if not files:
        raise ExportError("no exported files to check; pass at least one .onnx or .pt file")
    # A float32 CPU copy: the reference must not depend on where or in what precision the caller keeps G.
    G = copy.deepcopy(G).cpu().float().eval()
    checks = [check for path in files for check in file_checks(Path(path), providers or default_providers())]
    latent_dim = shared_latent_dim(checks)
    num_classes = shared_num_classes(checks)
    fed: set[int] = set()
    images = 0  # fed so far: each batch's labels continue the cycle of classes
    for seed in seeds:
        for batch in batch_sizes:
            z = random_z(seed, batch, latent_dim)
            labels = parity_labels(images, batch, num_classes)
            images += batch
            if labels is not None:
                fed.update(labels.tolist())
            reference = eager_images(G, z, labels)
            for check in checks:
                error = pixel_errors(check.run(z, labels), reference, check.meta)
                if check.meta.precision == PRECISION_INT8:
                    check.errors.append(error.ravel())
                # np.maximum, not max(): a NaN error must stick and fail the check
                check.worst = float(np.maximum(check.worst, error.max()))
    report = ParityReport(list(batch_sizes), list(seeds), [result_of(c) for c in checks], num_classes, len(fed))
    raise_if_failed(report)
    return report


def parity_labels(first: int, batch: int, num_classes: int) -> np.ndarray | None:
    """Labels first, first + 1, ... modulo the number of classes (None for an unconditional G), where
    `first` counts the images checked before: the checks cover every class there is room for."""
    if not num_classes:
        return None
    return (first + np.arange(batch, dtype=np.int64)) % num_classes


def result_of(check: Check) -> ParityResult:
    meta = check.meta
    result = ParityResult(check.path.name, check.runtime, meta.output_kind, meta.precision, check.worst, bar(meta))
    if meta.precision == PRECISION_INT8:
        errors = np.concatenate(check.errors)
        result.mean_error, result.p99_error = float(errors.mean()), float(np.percentile(errors, 99))
        result.mean_bar, result.p99_bar = INT8_MEAN_LEVELS, float(INT8_P99_LEVELS)
    return result


def default_providers() -> list[str]:
    """The CPU EP always; the CUDA EP only with a usable GPU (onnxruntime-gpu lists it even without one)."""
    if torch.cuda.is_available() and CUDA_EP in ort.get_available_providers():
        return [CPU_EP, CUDA_EP]
    return [CPU_EP]


def file_checks(path: Path, providers: Sequence[str]) -> list[Check]:
    """An ONNX file is checked in each provider (an int8 graph, made for the CPU, on the CPU only),
    a TorchScript file in TorchScript on the CPU."""
    if path.suffix == ".onnx":
        meta = read_onnx_metadata(path)
        if meta.precision == PRECISION_INT8:
            providers = [CPU_EP]
        return [Check(path, meta, RUNTIME_NAMES.get(p, p), onnx_runner(path, p)) for p in providers]
    module, meta = load_torchscript(path)

    def run_torchscript(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        inputs = (torch.from_numpy(z),) if labels is None else (torch.from_numpy(z), torch.from_numpy(labels))
        with torch.no_grad():
            return module(*inputs).numpy()

    return [Check(path, meta, "torchscript", run_torchscript)]


def onnx_runner(path: Path, provider: str) -> Runner:
    # e.g. an opset newer than this onnxruntime supports
    session = open_session(path, [(provider, PROVIDER_OPTIONS.get(provider, {}))], error=ExportError,
                           fix="export with the default --opset")
    if session.get_providers()[0] != provider:
        # onnxruntime falls back to the CPU silently; a result labelled CUDA must have run there.
        raise ExportError(f"onnxruntime could not start {provider} for {path.name}; check the CUDA and cuDNN libraries")
    return lambda z, labels: session.run(None, feeds(z, labels))[0]


def feeds(z: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    return {INPUT_NAME: z} if labels is None else {INPUT_NAME: z, LABEL_NAME: labels}


def shared_latent_dim(checks: list[Check]) -> int:
    sizes = {c.meta.latent_dim for c in checks}
    if len(sizes) != 1:
        raise ExportError(f"the files disagree on the size of z ({sorted(sizes)}); check files of one generator only")
    return sizes.pop()


def shared_num_classes(checks: list[Check]) -> int:
    sizes = {c.meta.class_names for c in checks}
    if len(sizes) != 1:
        raise ExportError("the files disagree on the classes of the generator; check files of one generator only")
    return len(sizes.pop())


def random_z(seed: int, batch: int, latent_dim: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, latent_dim), dtype=np.float32)


def eager_images(G: nn.Module, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """The reference: G in float32 on the CPU, eval mode, float NCHW (given labels when conditional)."""
    with torch.no_grad():
        if labels is None:
            return G(torch.from_numpy(z)).numpy()
        return G(torch.from_numpy(z), torch.from_numpy(labels)).numpy()


def pixel_errors(output: np.ndarray, reference: np.ndarray, meta: ModelMetadata) -> np.ndarray:
    """|output - eager| per value: absolute for float outputs, in levels for uint8 ones."""
    if meta.output_kind == OUTPUT_UINT8_NHWC:
        # eager's output quantised as the uint8 graph quantises it, as NHWC levels (float: a NaN stays NaN)
        reference = to_levels(reference, meta.value_range).transpose(0, 2, 3, 1)
        output = output.astype(np.float64)
    if output.shape != reference.shape:
        raise ParityError(f"output shape {output.shape} differs from eager's {reference.shape}; re-export the model")
    return np.abs(output - reference)


def bar(meta: ModelMetadata) -> float:
    """Largest error allowed for a file of this output kind and precision (int8: any; see result_of)."""
    if meta.precision == PRECISION_INT8:
        return 255.0
    float_bar = FP16_MAX_ABS_ERROR if meta.precision == PRECISION_FP16 else FP32_MAX_ABS_ERROR
    if meta.output_kind != OUTPUT_UINT8_NHWC:
        return float_bar
    if meta.precision != PRECISION_FP16:
        return float(UINT8_MAX_LEVELS)
    # half precision moves values by up to the fp16 bar, i.e. that many levels, before rounding
    low, high = meta.value_range
    return float(UINT8_MAX_LEVELS + math.ceil(FP16_MAX_ABS_ERROR * 255.0 / (high - low)))


def raise_if_failed(report: ParityReport) -> None:
    failed = [r for r in report.results if not r.passed]
    if failed:
        worst = max(failed, key=badness)
        names = ", ".join(f"{r.file} ({r.runtime})" for r in failed)
        raise ParityError(f"parity failed for {names}: worst {worst.file} in {worst.runtime} is {worst.describe_error()}")


def badness(result: ParityResult) -> float:
    """How far over its bar a result is, as a ratio (inf for NaN), to name the worst file."""
    ratios = [(result.max_error, result.bar)]
    if result.mean_bar is not None:
        ratios += [(result.mean_error, result.mean_bar), (result.p99_error, result.p99_bar)]
    return max(math.inf if math.isnan(value) or limit <= 0 else value / limit for value, limit in ratios)
