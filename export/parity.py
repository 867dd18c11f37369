"""Parity: does an exported file compute what the eager generator computes?

One function, `check_parity`, used by `gancli export` and by the tests (timm's check_forward).
Each file is run on fresh seeded z at several batch sizes, in TorchScript or in onnxruntime (CPU,
plus CUDA when a GPU is there), and compared with eager PyTorch in float32 on the CPU. The file's
own metadata says what it outputs and in which precision, which picks the bar it must meet.
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
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail, InvalidGraph as OrtInvalidGraph
import torch
from torch import nn

from export.errors import ExportError, ParityError
from export.onnx import read_metadata as read_onnx_metadata
from export.torchscript import load_torchscript
from export.wrapper import PRECISION_FP16
from runtime.metadata import INPUT_NAME, OUTPUT_UINT8_NHWC, ModelMetadata

BATCH_SIZES = (1, 7, 256)
SEEDS = (0, 1, 2)
FP32_MAX_ABS_ERROR = 1e-4
FP16_MAX_ABS_ERROR = 2e-2
# A uint8 graph rounds the same values eager rounds; float error can tip a pixel over one .5 boundary.
UINT8_MAX_LEVELS = 1

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
# TF32 would make the CUDA EP's float32 convolutions ~1e-3 off; parity checks the float32 graph itself.
PROVIDER_OPTIONS = {CUDA_EP: {"use_tf32": "0"}}
RUNTIME_NAMES = {CPU_EP: "onnxruntime-cpu", CUDA_EP: "onnxruntime-cuda"}

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class ParityResult:
    file: str
    runtime: str  # "torchscript", "onnxruntime-cpu" or "onnxruntime-cuda"
    output_kind: str
    precision: str
    max_error: float  # float outputs: max abs error; uint8 outputs: max difference in levels
    bar: float

    @property
    def passed(self) -> bool:
        return self.max_error <= self.bar  # False for NaN too


@dataclass
class ParityReport:
    batch_sizes: list[int]
    seeds: list[int]
    results: list[ParityResult] = field(default_factory=list)

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
    for seed in seeds:
        for batch in batch_sizes:
            z = random_z(seed, batch, latent_dim)
            reference = eager_images(G, z)
            for check in checks:
                # np.maximum, not max(): a NaN error must stick and fail the check
                check.worst = float(np.maximum(check.worst, max_error(check.run(z), reference, check.meta)))
    report = ParityReport(list(batch_sizes), list(seeds), [
        ParityResult(c.path.name, c.runtime, c.meta.output_kind, c.meta.precision, c.worst, bar(c.meta))
        for c in checks
    ])
    raise_if_failed(report)
    return report


def default_providers() -> list[str]:
    """The CPU EP always; the CUDA EP only with a usable GPU (onnxruntime-gpu lists it even without one)."""
    if torch.cuda.is_available() and CUDA_EP in ort.get_available_providers():
        return [CPU_EP, CUDA_EP]
    return [CPU_EP]


def file_checks(path: Path, providers: Sequence[str]) -> list[Check]:
    """An ONNX file is checked in each provider, a TorchScript file in TorchScript on the CPU."""
    if path.suffix == ".onnx":
        meta = read_onnx_metadata(path)
        return [Check(path, meta, RUNTIME_NAMES.get(p, p), onnx_runner(path, p)) for p in providers]
    module, meta = load_torchscript(path)

    def run_torchscript(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(z)).numpy()

    return [Check(path, meta, "torchscript", run_torchscript)]


def onnx_runner(path: Path, provider: str) -> Runner:
    try:
        session = ort.InferenceSession(str(path), providers=[(provider, PROVIDER_OPTIONS.get(provider, {}))])
    except (OrtFail, OrtInvalidGraph) as e:
        # e.g. an opset newer than this onnxruntime supports; its message ends with the reason
        reason = str(e).strip().splitlines()[-1].rsplit(". ", 1)[-1][:200]
        raise ExportError(f"onnxruntime {ort.__version__} cannot load {path.name} ({reason}); "
                          f"export with the default --opset") from e
    if session.get_providers()[0] != provider:
        # onnxruntime falls back to the CPU silently; a result labelled CUDA must have run there.
        raise ExportError(f"onnxruntime could not start {provider} for {path.name}; check the CUDA and cuDNN libraries")
    return lambda z: session.run(None, {INPUT_NAME: z})[0]


def shared_latent_dim(checks: list[Check]) -> int:
    sizes = {c.meta.latent_dim for c in checks}
    if len(sizes) != 1:
        raise ExportError(f"the files disagree on the size of z ({sorted(sizes)}); check files of one generator only")
    return sizes.pop()


def random_z(seed: int, batch: int, latent_dim: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, latent_dim), dtype=np.float32)


def eager_images(G: nn.Module, z: np.ndarray) -> np.ndarray:
    """The reference: G in float32 on the CPU, eval mode, float NCHW."""
    with torch.no_grad():
        return G(torch.from_numpy(z)).numpy()


def quantize_uint8_nhwc(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Eager's float NCHW output quantised the way the uint8 graph does it, as NHWC levels."""
    low, high = value_range
    levels = np.clip(np.round((images - low) * (255.0 / (high - low))), 0, 255)
    return levels.transpose(0, 2, 3, 1)


def max_error(output: np.ndarray, reference: np.ndarray, meta: ModelMetadata) -> float:
    if meta.output_kind == OUTPUT_UINT8_NHWC:
        reference = quantize_uint8_nhwc(reference, meta.value_range)
        output = output.astype(np.float64)
    if output.shape != reference.shape:
        raise ParityError(f"output shape {output.shape} differs from eager's {reference.shape}; re-export the model")
    return float(np.abs(output - reference).max())


def bar(meta: ModelMetadata) -> float:
    """Largest error allowed for a file of this output kind and precision."""
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
        worst = max(failed, key=lambda r: math.inf if math.isnan(r.max_error) or r.bar <= 0 else r.max_error / r.bar)
        names = ", ".join(f"{r.file} ({r.runtime})" for r in failed)
        raise ParityError(f"parity failed for {names}: worst {worst.file} in {worst.runtime} is off by "
                          f"{worst.max_error:.3g}, over the bar {worst.bar:.3g}")
