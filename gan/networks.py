"""Generators and discriminators: the Goodfellow-style MLP GAN and the DCGAN of Radford et al.,
each optionally class-conditional.

Every G maps z [B, latent_dim] (and, when conditional, labels int64 [B]) to images [B, C, H, W] in
[-1, 1] (Tanh); every D maps images (and labels) to one logit per image [B] (losses apply their own
link, so D has no sigmoid). Networks initialise themselves the way their paper does, so a network
built anywhere (training, evaluation's untrained ceiling, benchmarks) starts the same way.

Conditioning: G concatenates a learned embedding of the label to z (Mirza & Osindero, 2014), which
leaves every layer after the input unchanged (the int8 export rewrites those layers). D is a
projection discriminator (Miyato & Koyama, 2018): D(x, y) = psi(phi(x)) + <embed(y), sum phi(x)>.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gancli.gan.training.config import TrainConfig, dcgan_size_ok


def _sn(layer: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(layer) if enabled else layer


def _dropout(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


class LabelledLatent(nn.Module):
    """z, label -> [z, embed(label)]: the conditional generator's input; identity when unconditional."""

    def __init__(self, latent_dim: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.out_dim = latent_dim * 2 if num_classes else latent_dim

    def forward(self, z: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return z
        if label is None:
            raise ValueError("this generator is class-conditional: pass a label per image")
        return torch.cat([z, self.embed(label)], dim=1)


class Projection(nn.Module):
    """<embed(y), features> added to D's logit (Miyato & Koyama, 2018), and an auxiliary class head on
    the same features (Odena et al., 2017's AC-GAN) for the class loss; absent when unconditional."""

    def __init__(self, num_classes: int, feature_dim: int, spectral_norm: bool):
        super().__init__()
        self.embed = _sn(nn.Embedding(num_classes, feature_dim), spectral_norm) if num_classes else None
        self.classifier = _sn(nn.Linear(feature_dim, num_classes), spectral_norm) if num_classes else None

    def forward(self, logit: torch.Tensor, features: torch.Tensor, label: torch.Tensor | None,
                with_classes: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.embed is None:
            return logit
        logit = logit + (self.embed(label) * features).sum(dim=1)
        return (logit, self.classifier(features)) if with_classes else logit


class MLPGenerator(nn.Module):
    """z -> 128 -> 256 -> 512 -> 1024 -> C*H*W, BN on all blocks but the first, LeakyReLU 0.2, Tanh."""

    def __init__(self, latent_dim: int, channels: int, img_size: int, dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        self.image_shape = (channels, img_size, img_size)
        self.input = LabelledLatent(latent_dim, num_classes)

        def block(n_in: int, n_out: int, normalize: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
            if normalize:
                layers.append(nn.BatchNorm1d(n_out))
            return layers + [nn.LeakyReLU(0.2)] + _dropout(dropout)

        self.net = nn.Sequential(
            *block(self.input.out_dim, 128, normalize=False),
            *block(128, 256, normalize=True),
            *block(256, 512, normalize=True),
            *block(512, 1024, normalize=True),
            nn.Linear(1024, math.prod(self.image_shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.input(z, label)).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """Flatten -> 512 -> 256 -> 1 logit, LeakyReLU 0.2 (+ projection of the 256 features)."""

    def __init__(self, channels: int, img_size: int, spectral_norm: bool = True, num_classes: int = 0):
        super().__init__()
        n_in = channels * img_size * img_size
        self.features = nn.Sequential(
            nn.Flatten(),
            _sn(nn.Linear(n_in, 512), spectral_norm),
            nn.LeakyReLU(0.2),
            _sn(nn.Linear(512, 256), spectral_norm),
            nn.LeakyReLU(0.2),
        )
        self.out = _sn(nn.Linear(256, 1), spectral_norm)
        self.projection = Projection(num_classes, 256, spectral_norm)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None, with_classes: bool = False):
        """One logit per image [B]; with `with_classes` (conditional D only) also class logits [B, classes]."""
        h = self.features(x)
        return self.projection(self.out(h).view(-1), h, label, with_classes)


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
    """Transposed convolutions with BN + ReLU, Tanh output; `depth` > 1 adds 3x3 convolutions at each
    resolution, as D's `depth` does (more capacity per pixel at the cost of compute)."""

    def __init__(self, latent_dim: int, channels: int, img_size: int, width: int = 64, dropout: float = 0.0,
                 num_classes: int = 0, depth: int = 1):
        super().__init__()
        start, widths = dcgan_plan(img_size, width)
        self.input = LabelledLatent(latent_dim, num_classes)

        def block(first: nn.Module, c_out: int) -> list[nn.Module]:
            convs = [first] + [nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False) for _ in range(depth - 1)]
            return [layer for conv in convs for layer in (conv, nn.BatchNorm2d(c_out), nn.ReLU(True), *_dropout(dropout))]

        # state size: input x 1 x 1 -> widths[0] x start x start
        layers = block(nn.ConvTranspose2d(self.input.out_dim, widths[0], start, 1, 0, bias=False), widths[0])
        # each block doubles the side and halves the channels
        for c_in, c_out in zip(widths, widths[1:]):
            layers += block(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), c_out)
        # state size: widths[-1] x size/2 x size/2 -> channels x size x size
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.input(z, label)[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """Strided convolutions + LeakyReLU 0.2, one logit; BN after every conv but the first when
    `batch_norm` (DCGAN), none when not (SNGAN: spectral norm alone keeps D Lipschitz, and a D
    without BN judges each image on its own, so real and fake can share one forward pass).

    `depth` convolutions per resolution: 1 is the DCGAN paper's D; each extra one is a 3x3 stride-1
    conv after the downsampling one, as in SNGAN's "standard CNN" D. Spectral norm caps each layer's
    gain, so a 2-layer SN D at 28x28 is too weak to tell digits apart and G learns slowly."""

    def __init__(self, channels: int, img_size: int, width: int = 64, spectral_norm: bool = True,
                 batch_norm: bool = True, num_classes: int = 0, depth: int = 1):
        super().__init__()
        start, widths = dcgan_plan(img_size, width)
        widths = widths[::-1]  # narrowest first: D mirrors G

        def block(c_in: int, c_out: int, first: bool) -> list[nn.Module]:
            convs = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)]
            convs += [nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False) for _ in range(depth - 1)]
            layers: list[nn.Module] = []
            for conv in convs:
                layers.append(_sn(conv, spectral_norm))
                layers += [nn.BatchNorm2d(c_out)] if batch_norm and not first else []
                layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        layers = block(channels, widths[0], first=True)
        for c_in, c_out in zip(widths, widths[1:]):
            layers += block(c_in, c_out, first=False)
        self.features = nn.Sequential(*layers)
        # state size: widths[-1] x start x start -> 1 x 1 x 1
        self.out = _sn(nn.Conv2d(widths[-1], 1, start, 1, 0, bias=False), spectral_norm)
        self.projection = Projection(num_classes, widths[-1], spectral_norm)
        dcgan_init_(self)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None, with_classes: bool = False):
        """One logit per image [B]; with `with_classes` (conditional D only) also class logits [B, classes]."""
        h = self.features(x)
        return self.projection(self.out(h).view(-1), h.sum(dim=(2, 3)), label, with_classes)


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
                    dropout: float = 0.0, num_classes: int = 0, depth: int = 1) -> nn.Module:
    if arch == "mlp":
        return MLPGenerator(latent_dim, channels, img_size, dropout, num_classes)
    if arch == "dcgan":
        return DCGANGenerator(latent_dim, channels, img_size, width, dropout, num_classes, depth)
    raise ValueError(f"unknown arch {arch!r}")


def build_discriminator(cfg: TrainConfig, num_classes: int = 0) -> nn.Module:
    if cfg.arch == "mlp":
        return MLPDiscriminator(cfg.channels, cfg.img_size, cfg.spectral_norm, num_classes)
    return DCGANDiscriminator(cfg.channels, cfg.img_size, cfg.width, cfg.spectral_norm, cfg.d_batch_norm, num_classes,
                              cfg.d_depth)


def build_models(cfg: TrainConfig, num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    """Fresh (G, D) for a training config; `num_classes` > 0 makes both class-conditional."""
    G = build_generator(cfg.arch, cfg.latent_dim, cfg.channels, cfg.img_size, cfg.width, cfg.g_dropout, num_classes,
                        cfg.g_depth)
    return G, build_discriminator(cfg, num_classes)
