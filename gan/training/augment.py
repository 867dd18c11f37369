"""DiffAugment (Zhao et al., 2020): the same differentiable augmentations on real and fake images
before D, so D cannot memorise a small training set while G still learns the un-augmented images.

Each op draws its own random parameters per image from torch's global RNG, so a seeded run (and a
resumed one, whose checkpoint holds the RNG state) augments identically. Images are in [-1, 1].
Follows the authors' reference implementation (github.com/mit-han-lab/data-efficient-gans).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply the comma-separated ops of `policy` ("color,translation,cutout") in that order."""
    for op in filter(None, policy.split(",")):
        x = OPS[op](x)
    return x


def color(x: torch.Tensor) -> torch.Tensor:
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5] per image."""
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its side, filling with zeros (mid-grey)."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy + dy + 1, 0, h + 1)
    gx = torch.clamp(gx + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gy, gx].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of half the side per image, at a random place."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gy = torch.clamp(gy + oy - ch // 2, 0, h - 1)
    gx = torch.clamp(gx + ox - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, device=x.device, dtype=x.dtype)
    mask[gb, gy, gx] = 0
    return x * mask.unsqueeze(1)


OPS = {"color": color, "translation": translation, "cutout": cutout}
