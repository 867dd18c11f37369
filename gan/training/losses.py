"""GAN losses on D's logits: one D loss and one G loss per kind.

- bce: non-saturating GAN (Goodfellow et al., 2014), with one-sided label smoothing for real images.
- hinge: SNGAN / BigGAN (Lim & Ye, 2017; Miyato et al., 2018).
- ralsgan: relativistic average least squares (Jolicoeur-Martineau, 2018): each side is judged
  against the other side's mean logit, so the G loss needs D's logits on real images too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

RELATIVISTIC = ("ralsgan",)


def d_loss(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    if kind == "ralsgan":
        return ((d_real - d_fake.mean() - 1.0) ** 2).mean() + ((d_fake - d_real.mean() + 1.0) ** 2).mean()
    return d_loss_real(kind, d_real, real_label) + d_loss_fake(kind, d_fake)


def d_loss_real(kind: str, d_real: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    """The real images' part of a loss that separates (bce, hinge): D with batch norm sees them alone."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, real_label))
    if kind == "hinge":
        return F.relu(1.0 - d_real).mean()
    raise ValueError(f"loss {kind!r} does not separate into a real and a fake part")


def d_loss_fake(kind: str, d_fake: torch.Tensor) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    if kind == "hinge":
        return F.relu(1.0 + d_fake).mean()
    raise ValueError(f"loss {kind!r} does not separate into a real and a fake part")


def g_loss(kind: str, d_fake: torch.Tensor, d_real: torch.Tensor | None = None) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    if kind == "hinge":
        return -d_fake.mean()
    if kind == "ralsgan":
        return ((d_fake - d_real.mean() - 1.0) ** 2).mean() + ((d_real - d_fake.mean() + 1.0) ** 2).mean()
    raise ValueError(f"unknown loss {kind!r}")
