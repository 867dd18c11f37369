"""Inception-v3 features for FID during training; see inception_judge."""
from __future__ import annotations

import torch

from gancli.gan.data import ImageData


def inception_judge(data: ImageData, device: torch.device):
    """None until the standard Inception network is wired in."""
    return None
