"""ONNX export with the torch.export-based exporter, metadata embedded, checked, written atomically."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from gancli.export.errors import ExportError
from gancli.export.wrapper import build_metadata, example_inputs, export_wrapper
from gancli.gan.artifact import GeneratorSpec
from gancli.runtime.files import atomic_path
from gancli.runtime.metadata import INPUT_NAME, LABEL_NAME, METADATA_KEY, OUTPUT_FLOAT_NCHW, OUTPUT_NAME, ModelMetadata

DEFAULT_OPSET = 20
# The torch.export-based exporter implements opset 18 and up; below that it silently keeps 18.
MIN_OPSET = 18
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


def export_onnx(G: nn.Module, spec: GeneratorSpec, path: Path, output_kind: str = OUTPUT_FLOAT_NCHW,
                fp16: bool = False, opset: int = DEFAULT_OPSET) -> ModelMetadata:
    """Write G as one self-describing ONNX file at `path` (atomically) and return its metadata.

    The dynamo exporter folds batch norm into the convolutions and gives a clean graph; only the
    batch axis of `z` (and `label`, for a conditional G) and `images` is dynamic.
    """
    check_opset(opset)
    meta = build_metadata(spec, output_kind, fp16)
    model = onnx_model(G, spec, output_kind, fp16, opset)
    check_opset_written(model, opset)
    set_metadata(model, meta)
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    return meta


def onnx_model(G: nn.Module, spec: GeneratorSpec, output_kind: str, fp16: bool, opset: int) -> onnx.ModelProto:
    wrapper = export_wrapper(G, spec, output_kind, fp16)
    batch = torch.export.Dim("batch")
    inputs = example_inputs(spec)
    names = [INPUT_NAME, LABEL_NAME][:len(inputs)]  # the wrapper's forward(z, label) argument names
    with torch.no_grad(), warnings.catch_warnings():
        # z and label share the one batch axis; the exporter warns that it names it once (as it should)
        warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used", category=UserWarning)
        program = torch.onnx.export(
            wrapper, inputs, input_names=names, output_names=[OUTPUT_NAME],
            opset_version=opset, dynamic_shapes={name: {0: batch} for name in names}, dynamo=True, verbose=False,
        )
    return without_stack_traces(program.model_proto)


def without_stack_traces(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the exporter's per-node Python stack traces: they name source files of the machine that
    exported (a shipped model carries no path of it) and nothing that runs the graph reads them."""
    nodes = [*model.graph.node, *(node for function in model.functions for node in function.node)]
    for node in nodes:
        kept = [prop for prop in node.metadata_props if prop.key != STACK_TRACE_KEY]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return model


@functools.lru_cache(maxsize=1)
def newest_opset() -> int:
    """The newest opset that both onnx and the installed onnxruntime take: exports are checked in onnxruntime,
    which may lag onnx (onnx 1.23 writes 28, onnxruntime 1.31 runs up to 26). Probed with a one-node graph."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    for opset in range(onnx.defs.onnx_opset_version(), MIN_OPSET, -1):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
        imports = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=imports, ir_version=helper.find_min_ir_version_for(imports))
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # noqa: BLE001 (onnxruntime raises its own types for "opset not supported")
            continue
    return MIN_OPSET


def check_opset(opset: int) -> None:
    newest = newest_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"--opset {opset} is not supported; use {MIN_OPSET} to {newest} (default {DEFAULT_OPSET})")


def check_opset_written(model: onnx.ModelProto, opset: int) -> None:
    """The exporter falls back to another opset with only a log line when it cannot convert; refuse that."""
    written = {op.version for op in model.opset_import if op.domain in ("", "ai.onnx")}
    if written != {opset}:
        raise ExportError(f"the exporter could not write opset {opset} (it wrote {sorted(written)}); "
                          f"use --opset {DEFAULT_OPSET} or one it can convert to")


def set_metadata(model: onnx.ModelProto, meta: ModelMetadata) -> None:
    """Store the metadata as one JSON string under `gancli` (a runtime reads it via custom_metadata_map)."""
    model.metadata_props.add(key=METADATA_KEY, value=meta.to_json())


def read_metadata(path: Path) -> ModelMetadata:
    """Metadata of an exported ONNX file, read with onnx alone."""
    model = onnx.load_model(str(path), load_external_data=False)
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))
