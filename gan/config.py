"""Training configuration: one dataclass, named presets, and the rule that flags override presets.

The resolved config is written as JSON into the run directory before training starts
(stylegan2-ada's `training_options.json`), so every run says exactly what produced it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gancli.gan.errors import ConfigError

NAMED_DATASETS = ("mnist", "cats")
ARCHS = ("mlp", "dcgan")


@dataclass
class TrainConfig:
    # --- data ---
    dataset: str = "mnist"  # "mnist", "cats", or a path to a folder of images
    data_root: str | None = None  # holds mnist/ and cats/; None: $GANCLI_DATA_ROOT or the user cache
    img_size: int = 28  # square side in pixels; dcgan needs 28 or a power of two >= 32
    channels: int = 1  # 1 grey, 3 RGB
    val_fraction: float = 0.05  # seeded share of the images held out for validation losses
    limit: int | None = None  # train on the first N usable images only (quick runs)
    # --- model ---
    arch: str = "dcgan"  # "mlp" (Goodfellow-style) or "dcgan" (Radford et al.)
    latent_dim: int = 100  # size of z
    width: int = 64  # dcgan: channels of the widest-resolution layer; mlp ignores it
    spectral_norm: bool = True  # spectral norm on every D layer (Miyato et al., 2018)
    g_dropout: float = 0.1  # dropout after each hidden G block while training; off at eval/export
    # --- optimisation ---
    n_epochs: int = 25
    batch_size: int = 128
    lr: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    real_label: float = 0.9  # one-sided label smoothing: D's target for real images
    ema_decay: float = 0.999  # EMA of G's weights; the artifact ships the EMA generator
    seed: int = 0
    # --- run ---
    device: str = "auto"  # "auto" (cuda when present), "cuda", "cpu"
    amp: bool = True  # mixed precision on CUDA; ignored on the CPU
    sample_interval: int = 400  # batches between sample grids (each epoch end writes one too)
    out_dir: str = "runs"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @property
    def dataset_name(self) -> str:
        """Short name for run directories: the preset name or the folder's name."""
        return self.dataset if self.dataset in NAMED_DATASETS else Path(self.dataset).name or "folder"


# Presets pick what depends on the data; anything the user passes explicitly wins (see resolve_config).
PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {"img_size": 28, "channels": 1, "arch": "dcgan"},
    "cats": {"img_size": 64, "channels": 3, "arch": "dcgan"},
    "folder": {"img_size": 64, "channels": 3, "arch": "dcgan"},
}


def resolve_config(dataset: str, **overrides: Any) -> TrainConfig:
    """Preset for `dataset`, then every override that is not None, then validation."""
    preset = PRESETS[dataset if dataset in NAMED_DATASETS else "folder"]
    values = {**preset, **{k: v for k, v in overrides.items() if v is not None}}
    cfg = TrainConfig(dataset=dataset, **values)
    validate_config(cfg)
    return cfg


def validate_config(cfg: TrainConfig) -> None:
    """Raise ConfigError with one line naming the bad option and what would be accepted."""
    if cfg.arch not in ARCHS:
        raise ConfigError(f"--arch {cfg.arch!r} is not known; use one of {', '.join(ARCHS)}")
    if cfg.channels not in (1, 3):
        raise ConfigError(f"--channels {cfg.channels} is not supported; use 1 (grey) or 3 (RGB)")
    if cfg.arch == "dcgan" and not dcgan_size_ok(cfg.img_size):
        raise ConfigError(f"--img-size {cfg.img_size} does not fit dcgan; use 28 or a power of two >= 32")
    if cfg.img_size < 8:
        raise ConfigError(f"--img-size {cfg.img_size} is too small; use at least 8")
    for name in ("n_epochs", "batch_size", "latent_dim", "width", "sample_interval"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction {cfg.val_fraction} must be in [0, 1)")
    if not 0.0 <= cfg.g_dropout < 1.0:
        raise ConfigError(f"--g-dropout {cfg.g_dropout} must be in [0, 1)")
    if not 0.0 < cfg.real_label <= 1.0:
        raise ConfigError(f"--real-label {cfg.real_label} must be in (0, 1]")
    if cfg.limit is not None and cfg.limit < 2:
        raise ConfigError(f"--limit {cfg.limit} must be at least 2 (one image to train on, one to validate)")
    if cfg.device not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"--device {cfg.device!r} is not known; use auto, cuda or cpu")


def dcgan_size_ok(size: int) -> bool:
    return size == 28 or (size >= 32 and size & (size - 1) == 0)
