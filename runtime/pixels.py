"""Float images -> uint8 pixels: the one rounding rule of the whole package.

A generator's float output in `value_range` (normally Tanh's [-1, 1]) becomes levels 0..255 by
scaling to [0, 255], clamping, and rounding half to even (torch.round, np.round and ONNX Round all
do): `clamp((x - low) * (255 / (high - low)), 0, 255).round()`. The uint8 ONNX serving graph is
traced from `to_levels` (export/wrapper.py), so the runtime's float-graph path, the parity check's
reference and evaluation's images all quantise exactly as the served bytes are quantised.

Torch-free (runtime must never import torch), yet `to_levels` works on torch tensors as well as
numpy arrays: it uses only operators and methods both have. gan/ and export/ import it from here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

LEVELS = 255.0


def to_levels(x: Any, value_range: tuple[float, float] = (-1.0, 1.0)) -> Any:
    """Floats in `value_range` -> levels 0..255, still float, rounded half to even (same layout, same kind
    of array: numpy in, numpy out; torch in, torch out, traceable into an ONNX graph)."""
    low, high = float(value_range[0]), float(value_range[1])
    # clamp before round, so that a cast to uint8 afterwards never wraps around
    return ((x - low) * (LEVELS / (high - low))).clip(0.0, LEVELS).round()


def to_uint8_nhwc(images: Any, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Float images [N, C, H, W] in `value_range` (a numpy array or a torch tensor, on any device) ->
    uint8 numpy [N, H, W, C], the layout image encoders and gancli's runtime use."""
    if not isinstance(images, np.ndarray):  # a torch tensor: to float32 numpy on the host
        images = images.detach().float().cpu().numpy()
    return np.ascontiguousarray(to_levels(images, value_range).astype(np.uint8).transpose(0, 2, 3, 1))
