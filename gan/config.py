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
from gancli.gan.jsonfile import read_json_object, wrong_field

NAMED_DATASETS = ("mnist", "cats")
ARCHS = ("mlp", "dcgan")
LOSSES = ("bce", "hinge", "ralsgan")
DIFFAUGMENT_OPS = ("color", "translation", "cutout")
CONFIG_FORMAT = "gancli-train-config"  # config.json names its format and version; those of gancli <= 0.2.0 name none
CONFIG_FORMAT_VERSION = 1


@dataclass
class TrainConfig:
    # --- data ---
    dataset: str = "mnist"  # "mnist", "cats", or a path to a folder of images
    data_root: str | None = None  # holds mnist/ and cats/; None: $GANCLI_DATA_ROOT or the user cache
    img_size: int = 28  # square side in pixels; dcgan needs 28 or a power of two >= 32
    channels: int = 1  # 1 grey, 3 RGB
    val_fraction: float = 0.05  # seeded share of the images held out for validation losses
    limit: int | None = None  # train on the first N usable images only (quick runs)
    conditional: bool = False  # learn p(image | class): MNIST digits or an ImageFolder's class folders
    # --- model ---
    arch: str = "dcgan"  # "mlp" (Goodfellow-style) or "dcgan" (Radford et al.)
    latent_dim: int = 100  # size of z
    width: int = 64  # dcgan: channels of the widest-resolution layer; mlp ignores it
    spectral_norm: bool = True  # spectral norm on every D layer (Miyato et al., 2018)
    d_batch_norm: bool = False  # batch norm in D after every conv but the first (DCGAN; dcgan only)
    d_depth: int = 1  # dcgan D: convolutions per resolution (1 = DCGAN; 2 adds a 3x3 conv, as SNGAN's D)
    g_dropout: float = 0.0  # dropout after each hidden G block while training; off at eval/export
    # --- optimisation (the default is the "sngan" recipe; see RECIPES) ---
    recipe: str = "sngan"  # the named recipe these values started from; flags may have changed some
    loss: str = "hinge"  # "bce" (non-saturating), "hinge" (SNGAN), "ralsgan" (relativistic average LSGAN)
    n_epochs: int = 25
    batch_size: int = 64
    lr_g: float = 2e-4  # separate rates for G and D (TTUR, Heusel et al., 2017)
    lr_d: float = 2e-4
    b1: float = 0.0
    b2: float = 0.9
    real_label: float = 1.0  # one-sided label smoothing for bce: D's target for real images
    diffaugment: str = ""  # DiffAugment policy (Zhao et al., 2020), e.g. "color,translation,cutout"
    r1_gamma: float = 0.0  # weight of the R1 penalty on real images (Mescheder et al., 2018); 0 = off
    class_loss: float = 0.3  # conditional: weight of D's auxiliary class loss (AC-GAN, Odena et al., 2017); 0 = off
    mode_seeking: float = 0.2  # conditional: weight of the mode-seeking term (MSGAN, Mao et al., 2019); 0 = off
    ema_decay: float = 0.999  # EMA of G's weights; the artifact ships the EMA generator
    seed: int = 0
    # --- quality tracking ---
    eval_every: int = 1  # epochs between quality scores (0 = never); the best-scoring EMA G is shipped
    eval_images: int = 2000  # generated images per quality score
    # --- run ---
    device: str = "auto"  # "auto" (cuda when present), "cuda", "cpu"
    threads: int | None = None  # CPU threads; None: the cores this process may use that are idle at start
    amp: bool = True  # mixed precision (float16) on CUDA; the CPU trains in float32 (see train.amp_dtype)
    sample_interval: int = 400  # batches between sample grids (each epoch end writes one too)
    out_dir: str = "runs"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "format": CONFIG_FORMAT, "format_version": CONFIG_FORMAT_VERSION},
                          indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the config",
                  way_out: str = "pass a config written by `gancli train`") -> "TrainConfig":
        """The config in `data` (what to_json wrote, or a config of an older gancli); ConfigError naming
        `source` and `way_out` when it is foreign, from a newer gancli, or has a key or value of the wrong kind."""
        data = dict(data)
        known = {f.name for f in fields(cls)}
        if "format" not in data and not known & set(data):
            raise ConfigError(f"{source} is not a gancli training config (none of its keys is an option); {way_out}")
        fmt, version = data.pop("format", CONFIG_FORMAT), data.pop("format_version", CONFIG_FORMAT_VERSION)
        if fmt != CONFIG_FORMAT:
            raise ConfigError(f"{source} is not a gancli training config (its format is {fmt!r}); {way_out}")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ConfigError(f"{source} has format version {json.dumps(version)}, not an integer; {way_out}")
        if version > CONFIG_FORMAT_VERSION:
            raise ConfigError(f"{source} was written by a newer gancli (config format {version}; this gancli reads "
                              f"up to {CONFIG_FORMAT_VERSION}); upgrade gancli to use it")
        if "lr" in data:  # configs of gancli 0.1 had one rate for both networks
            lr = data.pop("lr")
            data = {"lr_g": lr, "lr_d": lr, "recipe": "classic", "loss": "bce", "d_batch_norm": True, **data}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{source} has keys this gancli does not know ({', '.join(sorted(unknown))}): "
                              f"from a newer gancli, or edited; {way_out}")
        wrong = wrong_field(cls, data)
        if wrong:
            raise ConfigError(f"{source} is damaged: {wrong}; {way_out}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path, way_out: str = "pass a config.json written by `gancli train`") -> "TrainConfig":
        """The config in `path`; one ConfigError line naming the file and `way_out` when it is missing,
        empty, truncated, not JSON, foreign or from a newer gancli."""
        path = Path(path)
        data = read_json_object(path, "a gancli training config (a JSON object)", ConfigError, way_out)
        return cls.from_dict(data, str(path), way_out)

    @property
    def dataset_name(self) -> str:
        """Short name for run directories: the preset name or the folder's name."""
        return self.dataset if self.dataset in NAMED_DATASETS else Path(self.dataset).name or "folder"


# Named training recipes: every optimisation choice that the literature varies. README's recipe
# table compares them at equal compute (benchmarks/bench_recipes.py).
RECIPES: dict[str, dict[str, Any]] = {
    # the seed projects: BCE, spectral norm and batch norm in D, dropout in G, label smoothing 0.9
    "classic": {"loss": "bce", "spectral_norm": True, "d_batch_norm": True, "d_depth": 1, "g_dropout": 0.1,
                "real_label": 0.9, "lr_g": 2e-4, "lr_d": 2e-4, "b1": 0.5, "b2": 0.999, "batch_size": 128,
                "diffaugment": ""},
    # SNGAN (Miyato et al., 2018): hinge loss, spectral norm without batch norm in D, a 3x3 conv after each
    # strided one (its "standard CNN" D), Adam beta1 0
    "sngan": {"loss": "hinge", "spectral_norm": True, "d_batch_norm": False, "d_depth": 2, "g_dropout": 0.0,
              "real_label": 1.0, "lr_g": 2e-4, "lr_d": 2e-4, "b1": 0.0, "b2": 0.9, "batch_size": 64,
              "diffaugment": ""},
}
RECIPES["sngan-diffaugment"] = {**RECIPES["sngan"], "diffaugment": "color,translation,cutout"}

# Presets pick what depends on the data, including its best-measured recipe; anything the user
# passes explicitly wins (see resolve_config). A few thousand images (the 8,303 cats, most folders)
# need DiffAugment so D does not memorise them.
PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {"img_size": 28, "channels": 1, "arch": "dcgan", "recipe": "sngan"},
    "cats": {"img_size": 64, "channels": 3, "arch": "dcgan", "recipe": "sngan-diffaugment"},
    "folder": {"img_size": 64, "channels": 3, "arch": "dcgan", "recipe": "sngan-diffaugment"},
}


def resolve_config(dataset: str, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """Preset for `dataset`, then its recipe (or `recipe`), then every override that is not None, then validation."""
    preset = PRESETS[dataset if dataset in NAMED_DATASETS else "folder"]
    recipe = recipe or preset["recipe"]
    if recipe not in RECIPES:
        raise ConfigError(f"--recipe {recipe!r} is not known; use one of {', '.join(RECIPES)}")
    values = {**preset, **RECIPES[recipe], "recipe": recipe, **{k: v for k, v in overrides.items() if v is not None}}
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
    if cfg.loss not in LOSSES:
        raise ConfigError(f"--loss {cfg.loss!r} is not known; use one of {', '.join(LOSSES)}")
    if cfg.loss == "ralsgan" and cfg.arch == "dcgan" and cfg.d_batch_norm:
        raise ConfigError("--loss ralsgan compares real and fake in one batch, which batch norm in D mixes; "
                          "add --no-d-batch-norm or use --loss hinge")
    unknown_ops = [op for op in filter(None, cfg.diffaugment.split(",")) if op not in DIFFAUGMENT_OPS]
    if unknown_ops:
        raise ConfigError(f"--diffaugment {cfg.diffaugment!r}: unknown {', '.join(unknown_ops)}; "
                          f"use a comma-separated subset of {','.join(DIFFAUGMENT_OPS)}")
    if cfg.class_loss < 0 or cfg.mode_seeking < 0:
        raise ConfigError("--class-loss and --mode-seeking must be >= 0 (0 turns each off)")
    if cfg.r1_gamma < 0:
        raise ConfigError(f"--r1-gamma {cfg.r1_gamma} must be >= 0 (0 turns it off)")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"--threads {cfg.threads} must be at least 1")
    if cfg.eval_every < 0 or cfg.eval_images < 2:
        raise ConfigError("--eval-every must be >= 0 (0 = never) and --eval-images at least 2")
    for name in ("lr_g", "lr_d"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    for name in ("n_epochs", "batch_size", "latent_dim", "width", "d_depth", "sample_interval"):
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
