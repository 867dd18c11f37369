"""An exported generator as an onnxruntime session: z [B, latent_dim] float32 (and, for a class-conditional
model, label int64 [B]) -> uint8 images [B, H, W, C].

Everything about the model (z size, image shape, output layout) comes from its gancli metadata, so
a file that lacks it is refused rather than guessed at. On CUDA the input and output are bound with
IO binding; with the uint8 serving graph only the image bytes cross back to the host.
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from gancli.runtime.errors import GenerateError
from gancli.runtime.metadata import (INPUT_NAME, LABEL_NAME, OUTPUT_FLOAT_NCHW, OUTPUT_NAME, OUTPUT_UINT8_NHWC,
                                     ModelMetadata)
from gancli.runtime.pixels import to_uint8_nhwc

DEVICES = ("auto", "cuda", "cpu")
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# What onnxruntime raises for a file it cannot load (not a protobuf, bad graph, unsupported op, ...).
ORT_LOAD_ERRORS = (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.NoSuchFile,
                   ort_errors.InvalidArgument, ort_errors.NotImplemented, ort_errors.RuntimeException)
_ORT_FATAL_ONLY = 4
_ORT_WARNING = 2  # onnxruntime's default logger severity


def open_session(path: str | Path, providers: Sequence[str | tuple[str, dict]],
                 options: ort.SessionOptions | None = None, *, error: type[Exception] = GenerateError,
                 fix: str = "re-export it with `gancli export`") -> ort.InferenceSession:
    """The one place gancli creates an onnxruntime session: a file onnxruntime cannot load raises `error`
    (GenerateError here; export passes its ExportError) in one line naming the file, the reason and `fix`."""
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except ORT_LOAD_ERRORS as e:
        raise error(f"{path} is not a loadable ONNX model for onnxruntime {ort.__version__} "
                    f"({load_error_reason(e)}); {fix}") from e


def load_error_reason(e: Exception) -> str:
    """onnxruntime's reason in a few words: the last sentence of its message (an opset newer than this
    onnxruntime supports, a file that is not a protobuf, ...), at most 200 characters."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1].rsplit(". ", 1)[-1][:200] if lines else type(e).__name__


class DeviceFallbackWarning(UserWarning):
    """CUDA was expected (onnxruntime-gpu is installed) but no session could get it; running on the CPU."""


@contextlib.contextmanager
def _quiet_ort_log() -> Iterator[None]:
    """Silence onnxruntime's own multi-line log while it tries CUDA: we report the outcome in one line."""
    ort.set_default_logger_severity(_ORT_FATAL_ONLY)
    try:
        yield
    finally:
        ort.set_default_logger_severity(_ORT_WARNING)


def preload_cuda_libraries() -> None:
    """Let onnxruntime find the CUDA/cuDNN libraries that torch's nvidia-* wheels installed.

    Inside a torch process torch has loaded them already; preload_dlls prints (not raises) what it
    cannot find, which `session.get_providers()` reports better afterwards, so its output is dropped.
    """
    if "torch" in sys.modules or not hasattr(ort, "preload_dlls"):
        return
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            ort.preload_dlls()
        except (OSError, RuntimeError):
            pass  # nothing to preload; creating the CUDA session below reports the real problem


def session_options(threads: int) -> ort.SessionOptions:
    """Full graph optimisation, sequential execution, `threads` intra-op threads (0: one per core)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Pool threads that spin between ops steal the cores other processes need: with 2 threads on a
    # 2-core CPU shared with other work, batch 64 ran at 344 images/s without spinning, 163 with
    # (medians; benchmarks/bench_generate.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise GenerateError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    return device


class GeneratorSession:
    """One onnxruntime session of a gancli generator, with its metadata.

    device: "auto" (CUDA when a session really gets it, else CPU with a warning if CUDA was
    expected), "cuda" (fail when unavailable) or "cpu". threads: intra-op threads on the CPU
    (0 lets onnxruntime use one per core). initializers: {name: float32 array} replacing the graph's own
    (runtime/interpolate.py's class morph gives the label embedding a table of its own).
    """

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0,
                 initializers: dict[str, np.ndarray] | None = None):
        self.path = Path(path)
        # onnxruntime reads an added initializer's buffer for as long as the session lives: keep the OrtValues
        self._initializers = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
                              for name, value in (initializers or {}).items()}
        resolve_device(device)
        if not self.path.is_file():
            raise GenerateError(f"model file {self.path} not found; pass an exported .onnx file or a model name from models/")
        self.session = self._open(device, threads)
        self.device = "cuda" if CUDA_PROVIDER in self.session.get_providers() else "cpu"
        self.metadata = self._read_metadata()
        self._io_binding = self.session.io_binding() if self.device == "cuda" else None

    def _open(self, device: str, threads: int) -> ort.InferenceSession:
        options = session_options(threads)
        for name, value in self._initializers.items():
            options.add_initializer(name, value)
        cuda_built = CUDA_PROVIDER in ort.get_available_providers()
        if device == "cpu" or (device == "auto" and not cuda_built):
            return self._create(options, [CPU_PROVIDER])
        if device == "cuda" and not cuda_built:
            raise GenerateError("--device cuda: this onnxruntime has no CUDA execution provider; install onnxruntime-gpu or use --device cpu")
        preload_cuda_libraries()
        with _quiet_ort_log():
            session = self._create(options, [CUDA_PROVIDER, CPU_PROVIDER])
        # get_available_providers() lists CUDA whenever onnxruntime-gpu is installed; only the
        # session knows whether a GPU and the CUDA libraries were really there
        if CUDA_PROVIDER in session.get_providers():
            return session
        reason = "no usable NVIDIA GPU, driver, or CUDA 13 / cuDNN 9 libraries"
        if device == "cuda":
            raise GenerateError(f"--device cuda: onnxruntime could not start CUDA ({reason}); use --device cpu or auto")
        warnings.warn(f"CUDA unavailable ({reason}); generating on the CPU", DeviceFallbackWarning, stacklevel=3)
        return session

    def _create(self, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
        return open_session(self.path, providers, options)

    def _read_metadata(self) -> ModelMetadata:
        props = self.session.get_modelmeta().custom_metadata_map
        meta = ModelMetadata.from_props(props, str(self.path))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != meta.input_names or [o.name for o in outputs] != [OUTPUT_NAME]:
            expected = " and ".join(repr(name) for name in meta.input_names)
            raise GenerateError(f"{self.path}: expected input {expected} and one output {OUTPUT_NAME!r}"
                                f"{' (its metadata lists classes)' if meta.conditional else ''}; "
                                f"re-export it with `gancli export`")
        if inputs[0].shape[-1] != meta.latent_dim:
            raise GenerateError(f"{self.path}: input z has size {inputs[0].shape[-1]} but the metadata says {meta.latent_dim}; re-export it")
        return meta

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def feeds(self, z: np.ndarray, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The graph's inputs: z, and for a conditional model the labels (int64 [B], each < num_classes)."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if not self.metadata.conditional:
            if labels is not None:
                raise GenerateError(f"{self.path} is an unconditional model; it takes no labels")
            return {INPUT_NAME: z}
        if labels is None:
            raise GenerateError(f"{self.path} is class-conditional; pass a label per image")
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if labels.shape != (len(z),):
            raise GenerateError(f"labels must be one per image: got shape {list(labels.shape)} for {len(z)} z")
        bad = labels[(labels < 0) | (labels >= self.metadata.num_classes)]
        if len(bad):
            raise GenerateError(f"label {int(bad[0])} is outside {self.path}'s classes 0 to "
                                f"{self.metadata.num_classes - 1}; pass labels of its classes")
        return {INPUT_NAME: z, LABEL_NAME: labels}

    def run_raw(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """The graph's own output for z [B, latent_dim] float32 (and labels int64 [B] when conditional):
        float NCHW or uint8 NHWC, per metadata. A graph that fails to run, or whose output does not have
        the shape its metadata promises, is one GenerateError."""
        feeds = self.feeds(z, labels)
        try:
            out = self._run(feeds)
        except ORT_LOAD_ERRORS as e:
            raise GenerateError(f"{self.path} loads but fails to run in onnxruntime {ort.__version__} "
                                f"({load_error_reason(e)}); re-export it with `gancli export`") from e
        meta = self.metadata
        expected = ((len(z), meta.img_size, meta.img_size, meta.channels) if meta.output_kind == OUTPUT_UINT8_NHWC
                    else (len(z), meta.channels, meta.img_size, meta.img_size))
        if out.shape != expected:
            raise GenerateError(f"{self.path} makes images of shape {list(out.shape[1:])}, but its metadata says "
                                f"{list(expected[1:])} ({meta.output_kind}); re-export it with `gancli export`")
        return out

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self._io_binding is None:
            return self.session.run([OUTPUT_NAME], feeds)[0]
        binding = self._io_binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output(OUTPUT_NAME, "cuda")  # stays on the GPU until the one copy below
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def images(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """uint8 images [B, H, W, C] for z [B, latent_dim] (and labels [B] when conditional)."""
        out = self.run_raw(z, labels)
        if self.metadata.output_kind == OUTPUT_UINT8_NHWC:
            return out
        assert self.metadata.output_kind == OUTPUT_FLOAT_NCHW
        return to_uint8_nhwc(out, self.metadata.value_range)
