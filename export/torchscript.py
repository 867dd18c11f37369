"""TorchScript export: a traced module with the same contract as the ONNX graph, metadata in _extra_files."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from gancli.gan.artifact import GeneratorSpec
from gancli.runtime.files import atomic_path
from gancli.runtime.metadata import METADATA_KEY, OUTPUT_FLOAT_NCHW, ModelMetadata
from gancli.export.wrapper import build_metadata, example_inputs, export_wrapper


def export_torchscript(G: nn.Module, spec: GeneratorSpec, path: Path, output_kind: str = OUTPUT_FLOAT_NCHW,
                       fp16: bool = False) -> ModelMetadata:
    """Trace G behind the export wrapper and write it at `path` (atomically); return its metadata. A
    conditional G is traced with (z, label), so the module takes both."""
    meta = build_metadata(spec, output_kind, fp16)
    wrapper = export_wrapper(G, spec, output_kind, fp16)
    with torch.no_grad(), quiet_jit_deprecation():
        traced = torch.jit.trace(wrapper, example_inputs(spec))
    # through a Python file object: given a path, torch.jit.save aborts the whole process on a full disk
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f, quiet_jit_deprecation():
        torch.jit.save(traced, f, _extra_files={METADATA_KEY: meta.to_json()})
    return meta


@contextlib.contextmanager
def quiet_jit_deprecation() -> Iterator[None]:
    """torch 2.14 warns on every torch.jit call that it is deprecated; TorchScript is a format users ask for, so mute only that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, ModelMetadata]:
    """Load on the CPU with its metadata (torch.jit.load reads TorchScript's own format, not arbitrary pickles)."""
    extra = {METADATA_KEY: ""}
    with quiet_jit_deprecation():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    props = {METADATA_KEY: extra[METADATA_KEY]} if extra[METADATA_KEY] else {}
    return module.eval(), ModelMetadata.from_props(props, str(path))
