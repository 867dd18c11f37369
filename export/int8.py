"""An int8 serving graph for the CPU: the uint8 NHWC graph with int8 weights and activations.

onnxruntime's CPU EP runs Conv (QLinearConv) and MatMul/Gemm in int8 with VNNI, but has no int8
ConvTranspose: quantizing a DCGAN as it is leaves every layer in float between Quantize and
Dequantize nodes (slower than fp32; PERF-NOTES). So a DCGAN is first rewritten, exactly: the first
layer (a ConvTranspose on z as a 1x1 image) as the Linear it is, and each stride-2 ConvTranspose
(+ its BN and ReLU) as four 2x2 convolutions, one per output phase, whose outputs pixel shuffle
interleaves (same MACs, same function); then it is quantized statically (per-channel
int8 weights, uint8 activations calibrated on seeded z that are never the z a user generates from).
The MLP's Gemms are quantized dynamically (activation ranges per batch at run time; static ranges measured
worse: 99th percentile 18 levels against 11), all but its input layer. In both, the output layer stays float
(output_layer_nodes).

A class-conditional G concatenates a label embedding to z in its input layer (G.input) and leaves
every layer of G.net as it is, so the rewrite (of G.net only) is the same; its first layer simply
sees a longer vector. Calibration feeds labels cycling through every class with its z.

The file carries `precision: "int8"` in its metadata, which gives it its own parity bar (parity.py).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from torch import nn

from gancli.export.errors import ExportError
from gancli.export.onnx import DEFAULT_OPSET, export_onnx, set_metadata
from gancli.export.wrapper import PRECISION_INT8
from gancli.gan.artifact import GeneratorSpec
from gancli.runtime.files import atomic_path
from gancli.runtime.latents import latents
from gancli.runtime.metadata import INPUT_NAME, LABEL_NAME, OUTPUT_UINT8_NHWC

CALIBRATION_SEED = 12345  # not a seed users generate from by default (0): calibration z are not checked z
CALIBRATION_IMAGES = 512
CALIBRATION_BATCH = 64
# ConvTranspose2d(k=4, s=2, p=1): the kernel rows that feed output rows of parity 0 and of parity 1
TAPS = {0: (3, 1), 1: (2, 0)}


def fold_batch_norm(bias: torch.Tensor | None, bn: nn.BatchNorm2d | None, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per output channel that eval-mode BN applies after a layer with `bias`."""
    shift = bias.detach().clone() if bias is not None else torch.zeros(channels)
    if bn is None:
        return torch.ones(channels), shift
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias.detach() + (shift - bn.running_mean) * scale


class Projection(nn.Module):
    """The first layer, ConvTranspose2d(latent, C, k) on z as a 1x1 image (+ BN + ReLU), as the Linear
    it is: a Gemm, which onnxruntime runs in int8, where ConvTranspose would stay float."""

    def __init__(self, convt: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None, relu: bool):
        super().__init__()
        weight = convt.weight.detach()  # [latent, C, k, k]
        channels, side = weight.shape[1], weight.shape[2]
        scale, shift = fold_batch_norm(convt.bias, bn, channels)
        self.linear = nn.Linear(weight.shape[0], channels * side * side)
        with torch.no_grad():
            self.linear.weight.copy_((weight * scale[None, :, None, None]).flatten(1).T)
            self.linear.bias.copy_(shift.repeat_interleave(side * side))
        self.shape = (channels, side, side)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x.flatten(1)).unflatten(1, self.shape)
        return F.relu(y) if self.relu else y


class SubPixelConvTranspose(nn.Module):
    """ConvTranspose2d(k=4, s=2, p=1) + eval BatchNorm + ReLU as four 2x2 convolutions, one per output
    phase, interleaved by pixel shuffle: the same function, made of ops onnxruntime runs in int8."""

    PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))

    def __init__(self, convt: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None, relu: bool):
        super().__init__()
        weight = convt.weight.detach()  # [C_in, C_out, 4, 4]
        scale, shift = fold_batch_norm(convt.bias, bn, weight.shape[1])  # the same for every phase
        self.weights = nn.ParameterList(
            nn.Parameter(weight[:, :, list(TAPS[a])][:, :, :, list(TAPS[b])].permute(1, 0, 2, 3)
                         * scale[:, None, None, None])
            for a, b in self.PHASES)
        self.bias = nn.Parameter(shift)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for (a, b), weight in zip(self.PHASES, self.weights):
            # phase a = 0 reads input rows m-1 and m, phase a = 1 rows m and m+1 (F.pad: left, right, top, bottom)
            out = F.conv2d(F.pad(x, (1 - b, b, 1 - a, a)), weight, self.bias)
            outs.append(F.relu(out) if self.relu else out)
        y = torch.stack(outs, dim=2)  # [B, C, 4, H, W], phase index a * 2 + b
        return F.pixel_shuffle(y.flatten(1, 2), 2)


def is_projection(layer: nn.Module) -> bool:
    """A ConvTranspose2d that only ever sees a 1x1 input (the first DCGAN layer)."""
    return (isinstance(layer, nn.ConvTranspose2d) and layer.stride == (1, 1) and layer.padding == (0, 0)
            and layer.output_padding == (0, 0) and layer.groups == 1 and layer.dilation == (1, 1))


def is_upsampling(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.ConvTranspose2d) and layer.stride == (2, 2) and layer.kernel_size == (4, 4)
            and layer.padding == (1, 1) and layer.output_padding == (0, 0) and layer.groups == 1
            and layer.dilation == (1, 1))


def subpixel_generator(G: nn.Module) -> nn.Module:
    """An eval-mode copy of a DCGAN G made of Gemm and Conv only: the first layer (on 1x1 z) as a
    Projection, every stride-2 ConvTranspose (+ BN + ReLU) as a SubPixelConvTranspose."""
    G = copy.deepcopy(G).cpu().float().eval()
    layers, out, i = list(G.net.children()), [], 0
    while i < len(layers):
        layer = layers[i]
        rewrite = Projection if i == 0 and is_projection(layer) else SubPixelConvTranspose if is_upsampling(layer) else None
        if rewrite is None:
            out.append(layer)
            i += 1
            continue
        bn = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d) else None
        j = i + 1 + (bn is not None)
        relu = j < len(layers) and isinstance(layers[j], nn.ReLU)
        out.append(rewrite(layer, bn, relu))
        i = j + relu
    G.net = nn.Sequential(*out)
    return G


def calibration_labels(indices: np.ndarray, num_classes: int) -> np.ndarray | None:
    """Labels cycling through every class (None for an unconditional G)."""
    return (indices % num_classes).astype(np.int64) if num_classes else None


def check_same_function(original: nn.Module, rewritten: nn.Module, latent_dim: int, num_classes: int = 0) -> None:
    """The rewrite is exact up to float summation order; anything more is a bug, not quantization."""
    indices = np.arange(max(16, num_classes))
    inputs = [torch.from_numpy(latents(CALIBRATION_SEED, indices, latent_dim))]
    if num_classes:
        inputs.append(torch.from_numpy(calibration_labels(indices, num_classes)))
    with torch.no_grad():
        error = (rewritten(*inputs) - copy.deepcopy(original).cpu().float().eval()(*inputs)).abs().max().item()
    if not error <= 1e-4:
        raise ExportError(f"the sub-pixel rewrite of the generator is off by {error:.2g}; not exporting int8")


def export_int8_onnx(G: nn.Module, spec: GeneratorSpec, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """Write the int8 uint8-NHWC serving graph of G at `path` (atomically)."""
    source = G
    if spec.arch == "dcgan":
        source = subpixel_generator(G)
        check_same_function(G, source, spec.latent_dim, spec.num_classes)
    with tempfile.TemporaryDirectory(prefix="gancli-int8-") as work:
        plain, quantized = Path(work) / "float.onnx", Path(work) / "int8.onnx"
        meta = export_onnx(source, spec, plain, output_kind=OUTPUT_UINT8_NHWC, opset=opset)
        model = onnx.load(str(plain))
        # The exporter's value_info trips the quantizer's shape inference; onnxruntime infers its own.
        del model.graph.value_info[:]
        onnx.save(model, str(plain))
        with quiet_quantizer():
            quantize(plain, quantized, spec, model)
        model = onnx.load(str(quantized))
    del model.metadata_props[:]
    set_metadata(model, dataclasses.replace(meta, precision=PRECISION_INT8))
    onnx.checker.check_model(model)
    with atomic_path(Path(path)) as tmp:
        onnx.save_model(model, str(tmp))


def quantize(plain: Path, quantized: Path, spec: GeneratorSpec, model: onnx.ModelProto) -> None:
    """Quantize the float graph at `plain` (loaded as `model`) into `quantized`, its output layer left float."""
    keep_float = output_layer_nodes(model)
    if spec.arch == "dcgan":
        # Percentile calibration clips the rare extreme activations that would stretch each 8-bit
        # range (MNIST DCGAN, 99th percentile of the pixel error: 9 levels against 11 with min-max)
        quantize_static(str(plain), str(quantized), Calibration(spec.latent_dim, spec.num_classes),
                        quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=keep_float, calibrate_method=CalibrationMethod.Percentile)
    else:
        # The input layer stays float too: z quantized per batch to 8 bits is too coarse a start (an sngan MLP's
        # 99th percentile: 11 levels with it float, 15 without), and it is 1 % of the MLP's MACs.
        keep_float = keep_float + [input_layer_node(model)]
        # the dynamic quantizer first splits each Gemm X into X_MatMul + X_Add, and excludes by those names
        quantize_dynamic(str(plain), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=keep_float + [f"{name}_MatMul" for name in keep_float])


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer prints progress and logs advice on the root logger; export has its own output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def output_layer_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes from the output layer's Conv/Gemm/MatMul on (walking back from the graph
    output to the first such nodes met). They stay float: 256 steps over the pre-Tanh range are many
    levels apart where Tanh is steep (99th percentile of the pixel error with them quantized: MNIST DCGAN 17
    levels, sngan MLP 14; float: 9 and 11). The output layer is a few % of a DCGAN's MACs; for the MLP it is
    half, so its int8 graph is ~1.7x as fast as float instead of ~3x."""
    producer = {out: node for node in model.graph.node for out in node.output}
    found, stack = [], [o.name for o in model.graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in found:
            continue
        found.append(node.name)
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            stack.extend(node.input)
    return found


def input_layer_node(model: onnx.ModelProto) -> str:
    """Name of the first Gemm or MatMul of the graph (its nodes are in topological order): the layer that takes z."""
    return next(node.name for node in model.graph.node if node.op_type in ("Gemm", "MatMul"))


class Calibration(CalibrationDataReader):
    """Seeded z (and, for a conditional G, labels cycling through every class) for the activation ranges."""

    def __init__(self, latent_dim: int, num_classes: int = 0):
        self.batches = iter([self.batch(np.arange(k, k + CALIBRATION_BATCH), latent_dim, num_classes)
                             for k in range(0, CALIBRATION_IMAGES, CALIBRATION_BATCH)])

    @staticmethod
    def batch(indices: np.ndarray, latent_dim: int, num_classes: int) -> dict[str, np.ndarray]:
        feeds = {INPUT_NAME: latents(CALIBRATION_SEED, indices, latent_dim)}
        if num_classes:
            feeds[LABEL_NAME] = calibration_labels(indices, num_classes)
        return feeds

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)
