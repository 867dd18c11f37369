"""The fixed contract every exported generator follows, whatever the format.

Input `z` float32 [batch, latent_dim] (and, for a class-conditional G, `label` int64 [batch]), output
`images`; only the batch axis is dynamic (timm's onnx_export). The wrapper runs G in eval mode (BN running statistics, no dropout), optionally in
half precision, and optionally turns its output into the uint8 NHWC bytes an image encoder takes.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from gancli.gan.artifact import GeneratorSpec, gancli_version
from gancli.runtime.metadata import (DEPTH_FORMAT_VERSION, OUTPUT_FLOAT_NCHW, OUTPUT_KINDS, OUTPUT_UINT8_NHWC,
                                     ModelMetadata)
from gancli.runtime.pixels import to_levels
from gancli.export.errors import ExportError

PRECISION_FP32 = "fp32"
PRECISION_FP16 = "fp16"
PRECISION_INT8 = "int8"  # int8 weights and activations inside; see export/int8.py
# A batch of 1 would let the tracer specialise the batch axis to a constant; 2 keeps it symbolic.
TRACE_BATCH = 2


class ExportWrapper(nn.Module):
    """z float32 [B, latent_dim] (and label int64 [B] when G is conditional) -> images: float32 [B, C, H, W]
    in value_range, or uint8 [B, H, W, C]."""

    def __init__(self, G: nn.Module, spec: GeneratorSpec, output_kind: str, fp16: bool):
        super().__init__()
        # A private copy: converting to half or switching to eval must not change the caller's G.
        self.G = copy.deepcopy(G).cpu().eval()
        if fp16:
            self.G.half()
        self.fp16 = fp16
        self.output_kind = output_kind
        self.value_range = (float(spec.value_range[0]), float(spec.value_range[1]))

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        z = z.half() if self.fp16 else z
        x = (self.G(z) if label is None else self.G(z, label)).float()
        if self.output_kind == OUTPUT_UINT8_NHWC:
            # the package's one rounding rule (runtime/pixels.py), traced into the graph
            x = to_levels(x, self.value_range).to(torch.uint8)
            x = x.permute(0, 2, 3, 1)  # NCHW -> NHWC, the layout PIL and OpenCV encode
        return x


def export_wrapper(G: nn.Module, spec: GeneratorSpec, output_kind: str = OUTPUT_FLOAT_NCHW,
                   fp16: bool = False) -> ExportWrapper:
    if output_kind not in OUTPUT_KINDS:
        raise ExportError(f"unknown output kind {output_kind!r}; use one of {', '.join(OUTPUT_KINDS)}")
    return ExportWrapper(G, spec, output_kind, fp16).eval()


def build_metadata(spec: GeneratorSpec, output_kind: str, fp16: bool) -> ModelMetadata:
    """What a runtime needs to use the file with no other file beside it."""
    return ModelMetadata(
        latent_dim=spec.latent_dim,
        channels=spec.channels,
        img_size=spec.img_size,
        output_kind=output_kind,
        value_range=(float(spec.value_range[0]), float(spec.value_range[1])),
        dataset=spec.dataset,
        arch=spec.arch,
        precision=PRECISION_FP16 if fp16 else PRECISION_FP32,
        gancli_version=gancli_version(),
        weights_sha256=spec.weights_sha256,
        format_version=DEPTH_FORMAT_VERSION,
        class_names=tuple(spec.class_names),
        width=spec.width,
        g_depth=spec.g_depth,
    )


def example_z(spec: GeneratorSpec, batch: int = TRACE_BATCH, seed: int = 0) -> torch.Tensor:
    """Seeded z to trace with; the values do not matter, only the shape and dtype."""
    return torch.randn(batch, spec.latent_dim, generator=torch.Generator().manual_seed(seed))


def example_inputs(spec: GeneratorSpec, batch: int = TRACE_BATCH) -> tuple[torch.Tensor, ...]:
    """What to trace with: (z,), or (z, label) for a conditional G (labels 0, 1, ...: any valid ones do)."""
    if not spec.class_names:
        return (example_z(spec, batch),)
    return example_z(spec, batch), torch.arange(batch, dtype=torch.int64) % spec.num_classes
