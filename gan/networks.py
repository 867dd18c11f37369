"""Generators and discriminators: the Goodfellow-style MLP GAN and the DCGAN of Radford et al.

Every G maps z [B, latent_dim] to images [B, C, H, W] in [-1, 1] (Tanh); every D maps images to
one logit per image [B] (BCE-with-logits is applied by the loss, so D has no sigmoid).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gancli.gan.config import TrainConfig, dcgan_size_ok


def _sn(layer: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(layer) if enabled else layer


def _dropout(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


class MLPGenerator(nn.Module):
    """z -> 128 -> 256 -> 512 -> 1024 -> C*H*W, BN on all blocks but the first, LeakyReLU 0.2, Tanh."""

    def __init__(self, latent_dim: int, channels: int, img_size: int, dropout: float = 0.0):
        super().__init__()
        self.image_shape = (channels, img_size, img_size)

        def block(n_in: int, n_out: int, normalize: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
            if normalize:
                layers.append(nn.BatchNorm1d(n_out))
            return layers + [nn.LeakyReLU(0.2)] + _dropout(dropout)

        self.net = nn.Sequential(
            *block(latent_dim, 128, normalize=False),
            *block(128, 256, normalize=True),
            *block(256, 512, normalize=True),
            *block(512, 1024, normalize=True),
            nn.Linear(1024, math.prod(self.image_shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """Flatten -> 512 -> 256 -> 1 logit, LeakyReLU 0.2."""

    def __init__(self, channels: int, img_size: int, spectral_norm: bool = True):
        super().__init__()
        n_in = channels * img_size * img_size
        self.net = nn.Sequential(
            nn.Flatten(),
            _sn(nn.Linear(n_in, 512), spectral_norm),
            nn.LeakyReLU(0.2),
            _sn(nn.Linear(512, 256), spectral_norm),
            nn.LeakyReLU(0.2),
            _sn(nn.Linear(256, 1), spectral_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def dcgan_plan(img_size: int, width: int) -> tuple[int, list[int]]:
    """(start side, channels per intermediate resolution), widest first.

    28 starts from 7x7 (7 -> 14 -> 28); powers of two start from 4x4 (4 -> 8 -> ... -> size).
    The last intermediate layer has `width` channels and each halving of resolution doubles them,
    so 64x64 with width 64 gives 512-256-128-64 as in the DCGAN paper.
    """
    if not dcgan_size_ok(img_size):
        raise ValueError(f"dcgan needs 28 or a power of two >= 32, not {img_size}")
    start = 7 if img_size == 28 else 4
    n_doublings = int(math.log2(img_size // start))
    return start, [width * 2 ** (n_doublings - 1 - i) for i in range(n_doublings)]


class DCGANGenerator(nn.Module):
    """Transposed convolutions with BN + ReLU, Tanh output."""

    def __init__(self, latent_dim: int, channels: int, img_size: int, width: int = 64, dropout: float = 0.0):
        super().__init__()
        start, widths = dcgan_plan(img_size, width)
        # state size: latent_dim x 1 x 1 -> widths[0] x start x start
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], start, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
            *_dropout(dropout),
        ]
        # each block doubles the side and halves the channels
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
                *_dropout(dropout),
            ]
        # state size: widths[-1] x size/2 x size/2 -> channels x size x size
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """Strided convolutions with BN (not on the first layer) + LeakyReLU 0.2, one logit."""

    def __init__(self, channels: int, img_size: int, width: int = 64, spectral_norm: bool = True):
        super().__init__()
        start, widths = dcgan_plan(img_size, width)
        widths = widths[::-1]  # narrowest first: D mirrors G
        layers: list[nn.Module] = [_sn(nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), spectral_norm),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [
                _sn(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), spectral_norm),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        # state size: widths[-1] x start x start -> 1 x 1 x 1
        layers.append(_sn(nn.Conv2d(widths[-1], 1, start, 1, 0, bias=False), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def dcgan_init_(module: nn.Module) -> None:
    """Radford et al.: conv weights ~ N(0, 0.02), BN scale ~ N(1, 0.02), BN shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_generator(arch: str, latent_dim: int, channels: int, img_size: int, width: int = 64,
                    dropout: float = 0.0) -> nn.Module:
    if arch == "mlp":
        return MLPGenerator(latent_dim, channels, img_size, dropout)
    if arch == "dcgan":
        return DCGANGenerator(latent_dim, channels, img_size, width, dropout)
    raise ValueError(f"unknown arch {arch!r}")


def build_models(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """Fresh (G, D) for a training config, initialised the way each paper does."""
    G = build_generator(cfg.arch, cfg.latent_dim, cfg.channels, cfg.img_size, cfg.width, cfg.g_dropout)
    if cfg.arch == "mlp":
        D = MLPDiscriminator(cfg.channels, cfg.img_size, cfg.spectral_norm)
    else:
        D = DCGANDiscriminator(cfg.channels, cfg.img_size, cfg.width, cfg.spectral_norm)
        dcgan_init_(G)
        dcgan_init_(D)
    return G, D
