"""Training configuration: one dataclass, named presets, and the rule that flags override presets.

The resolved config is written as JSON into the run directory before training starts
(stylegan2-ada's `training_options.json`), so every run says exactly what produced it.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gancli.gan.errors import ArtifactError, ConfigError
from gancli.runtime.jsonfile import check_format, read_json_object, wrong_field

NAMED_DATASETS = ("mnist", "cats")
ARCHS = ("mlp", "dcgan")
LOSSES = ("bce", "hinge", "ralsgan")
DIFFAUGMENT_OPS = ("color", "translation", "cutout")
CONFIG_NAME = "config.json"  # in every run folder, written before training starts
CONFIG_FORMAT = "gancli-train-config"  # config.json names its format and version; those of gancli <= 0.2.0 name none
CONFIG_FORMAT_VERSION = 1


DATA, MODEL, TRAINING, RUN = "Data", "Model", "Training", "Run"
RECIPE_DEFAULT = "recipe's"


def option(help: str, panel: str = TRAINING, metavar: str | None = None, shown: str | None = None,
           flag: str | None = None) -> dict[str, Any]:
    """A TrainConfig field's command-line flag: its help, help panel, metavar, the default as shown (None: the
    field's own) and, for a boolean, its flag: "--x" sets it, "--no-x" clears it, "--x/--no-x" does either.
    `gancli train` is built from these."""
    return {"help": help, "panel": panel, "metavar": metavar, "shown": shown, "flag": flag}


@dataclass
class TrainConfig:
    """Every training option, each declared once: its default, its flag and help (`option`)."""

    # --- data ---
    dataset: str = field(default="mnist", metadata=option(
        "mnist, cats, or a folder of images (ImageFolder layout or flat).", DATA, "NAME|DIR"))
    data_root: str | None = field(default=None, metadata=option(
        "Folder holding mnist/ and cats/; a missing set is downloaded there when online ($GANCLI_DATA_ROOT).",
        DATA, "DIR", "~/.cache/gancli/data"))
    img_size: int = field(default=28, metadata=option(
        "Image side (dcgan: 28 or a power of two >= 32).", DATA, "PIXELS", "28 for mnist, else 64"))
    channels: int = field(default=1, metadata=option("1 (grey) or 3 (RGB).", DATA, "1|3", "1 for mnist, else 3"))
    val_fraction: float = field(default=0.05, metadata=option(
        "Seeded share of the images held out for validation losses.", DATA, "FLOAT"))
    limit: int | None = field(default=None, metadata=option("Train on the first N usable images only.", DATA, "N",
                                                             "all"))
    conditional: bool = field(default=False, metadata=option(
        "Learn p(image | class): MNIST's digits, or an ImageFolder's class folders.", DATA, flag="--conditional"))
    # --- model ---
    arch: str = field(default="dcgan", metadata=option("Generator and discriminator family: mlp or dcgan.", MODEL,
                                                         "NAME"))
    latent_dim: int = field(default=100, metadata=option("Size of z.", MODEL, "N"))
    width: int = field(default=64, metadata=option(
        "dcgan: channels at the finest resolution (doubled at each halving); mlp ignores it.", MODEL, "N"))
    spectral_norm: bool = field(default=True, metadata=option(
        "Leave D's layers without spectral norm (by default every layer has it; Miyato et al., 2018).", MODEL,
        flag="--no-spectral-norm"))
    d_batch_norm: bool = field(default=False, metadata=option(
        "Batch norm in D after every conv but the first (dcgan; classic has it).", MODEL, shown=RECIPE_DEFAULT, flag="--d-batch-norm/--no-d-batch-norm"))
    d_depth: int = field(default=1, metadata=option(
        "dcgan: D's convolutions per resolution (1: DCGAN; 2 adds a 3x3 conv, as SNGAN's D).", MODEL, "N",
        RECIPE_DEFAULT))
    g_depth: int = field(default=1, metadata=option(
        "dcgan: G's convolutions per resolution (1: DCGAN; 2 adds a 3x3 conv after each upsampling).", MODEL, "N",
        "2 for mnist, else 1"))
    g_dropout: float = field(default=0.0, metadata=option(
        "Dropout after each hidden G block while training (0: off); off at eval and export.", MODEL, "FLOAT",
        RECIPE_DEFAULT))
    # --- optimisation (the default is the "sngan" recipe; see RECIPES) ---
    recipe: str = field(default="sngan", metadata=option(
        "classic (the seed projects' BCE DCGAN), sngan or sngan-diffaugment: sets the options marked recipe's; "
        "flags override it.", TRAINING, "NAME", "sngan; cats and folders: sngan-diffaugment"))
    loss: str = field(default="hinge", metadata=option(
        "bce (non-saturating), hinge (SNGAN) or ralsgan (relativistic average LSGAN).", TRAINING, "NAME",
        RECIPE_DEFAULT))
    n_epochs: int = field(default=25, metadata=option("Total epochs; with --resume, the total to reach.",
                                                      TRAINING, "N"))
    batch_size: int = field(default=64, metadata=option("Images per batch (per process under torchrun).", TRAINING,
                                                        "N", RECIPE_DEFAULT))
    lr_g: float = field(default=2e-4, metadata=option("Adam learning rate of G.", TRAINING, "FLOAT", RECIPE_DEFAULT))
    lr_d: float = field(default=2e-4, metadata=option("Adam learning rate of D (TTUR: faster than G's).", TRAINING,
                                                      "FLOAT", RECIPE_DEFAULT))
    b1: float = field(default=0.0, metadata=option("Adam beta1, in [0, 1).", TRAINING, "FLOAT", RECIPE_DEFAULT))
    b2: float = field(default=0.9, metadata=option("Adam beta2, in [0, 1).", TRAINING, "FLOAT", RECIPE_DEFAULT))
    real_label: float = field(default=1.0, metadata=option(
        "bce: D's target for real images (one-sided label smoothing; 1.0: off).", TRAINING, "FLOAT", RECIPE_DEFAULT))
    diffaugment: str = field(default="", metadata=option(
        "DiffAugment (Zhao et al., 2020) on real and fake: a subset of color,translation,cutout, or an empty "
        "string for none.", TRAINING, "OPS", RECIPE_DEFAULT))
    r1_gamma: float = field(default=0.0, metadata=option(
        "Weight of the R1 gradient penalty on real images (Mescheder et al., 2018; 0: off).", TRAINING, "FLOAT"))
    r1_every: int = field(default=1, metadata=option(
        "With --r1-gamma: add the penalty every N-th batch at N times the weight (StyleGAN2's lazy regularisation; "
        "16 costs about 1/16 of R1's double backward).", TRAINING, "N"))
    d_steps: int = field(default=1, metadata=option(
        "D updates per G update (SNGAN's n_dis): every batch of real images trains D, and every N-th also trains G.",
        TRAINING, "N"))
    class_loss: float = field(default=0.3, metadata=option(
        "--conditional: weight of D's auxiliary class loss (AC-GAN; 0: off).", TRAINING, "FLOAT"))
    mode_seeking: float = field(default=0.2, metadata=option(
        "--conditional: weight of the mode-seeking term that keeps G from ignoring z (MSGAN; 0: off).", TRAINING,
        "FLOAT"))
    ema_decay: float = field(default=0.999, metadata=option(
        "Decay of the EMA of G's weights, in [0, 1); the artifact ships the EMA generator.", TRAINING, "FLOAT"))
    seed: int = field(default=0, metadata=option("Seed of weights, data order, z and dropout.", TRAINING, "N"))
    # --- quality tracking ---
    eval_every: int = field(default=1, metadata=option(
        "Epochs between quality scores (0: never); the best-scoring EMA G is kept.", TRAINING, "N"))
    eval_images: int = field(default=2000, metadata=option("Generated images per quality score.", TRAINING, "N"))
    # --- run ---
    device: str = field(default="auto", metadata=option("auto (CUDA when present), cuda or cpu.", RUN, "DEVICE"))
    threads: int | None = field(default=None, metadata=option("CPU threads of torch.", RUN, "N",
                                                              "idle cores at start"))
    amp: bool = field(default=True, metadata=option(
        "Train on CUDA in float32 (by default in mixed precision; the CPU always trains in float32).", RUN,
        flag="--no-amp"))
    sample_interval: int = field(default=400, metadata=option(
        "Batches between sample grids (each epoch end writes one too).", RUN, "N"))
    out_dir: str = field(default="runs", metadata=option("Parent folder of the numbered run folders.", RUN, "DIR"))
    init_from: str | None = field(default=None, metadata=option(
        "Start from this model's G, EMA G and D (a shipped name, or a run or model folder as a path: ./NAME) with "
        "fresh optimizers: continue training, or fine-tune on another folder. Its architecture is used, but a "
        "larger --width grows a dcgan model's G and D from its weights; an image size or channels other than the "
        "data set's need --img-size and --channels.", RUN, "MODEL",
        "random weights"))
    freeze_d: int = field(default=0, metadata=option(
        "With --init-from: keep D's first N weight layers fixed (FreezeD, Mo et al., 2020), for a few hundred "
        "images; at most the layers before D's output.", RUN, "N"))
    # written by gancli, not an option: what --init-from started from and the images its weights had seen
    lineage: dict | None = None

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "format": CONFIG_FORMAT, "format_version": CONFIG_FORMAT_VERSION},
                          indent=2, sort_keys=True)

    def portable(self) -> "TrainConfig":
        """This config as a model folder keeps it: without what belongs to the machine it ran on (its output and
        data folders, its thread count, and the folders above the model it started from)."""
        lineage = self.lineage and {**self.lineage, "init_from": without_machine(self.lineage.get("init_from"))}
        return replace(self, out_dir="runs", data_root=None, threads=None, init_from=without_machine(self.init_from),
                       lineage=lineage)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the config",
                  way_out: str = "pass a config written by `gancli train`") -> "TrainConfig":
        """The config in `data` (what to_json wrote, or a config of an older gancli); ConfigError naming
        `source` and `way_out` when it is foreign, from a newer gancli, or has a key or value of the wrong kind."""
        data = dict(data)
        known = {f.name for f in fields(cls)}
        if "format" not in data and not known & set(data):
            raise ConfigError(f"{source} is not a gancli training config (none of its keys is an option); {way_out}")
        check_format({"format": CONFIG_FORMAT, "format_version": CONFIG_FORMAT_VERSION, **data}, source,
                     CONFIG_FORMAT, CONFIG_FORMAT_VERSION, ConfigError, way_out, "a gancli training config")
        data.pop("format", None), data.pop("format_version", None)
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
    # MNIST's 28x28 G has only two resolutions; a 3x3 conv after each upsampling measured FCD 0.38 / IS 8.63
    # after 26 epochs against 1.58 / 7.93 after 24 without (docs/models.md)
    "mnist": {"img_size": 28, "channels": 1, "arch": "dcgan", "recipe": "sngan", "g_depth": 2},
    "cats": {"img_size": 64, "channels": 3, "arch": "dcgan", "recipe": "sngan-diffaugment"},
    "folder": {"img_size": 64, "channels": 3, "arch": "dcgan", "recipe": "sngan-diffaugment"},
}


def without_machine(path: str | None) -> str | None:
    """`path` as a shipped file may name it: a shipped model's name or a relative path as given, an absolute or
    home path by its last part only (the run or model folder, which the lineage's weights hash identifies)."""
    if path is None or not (Path(path).is_absolute() or path.startswith("~")):
        return path
    return Path(path).name


def preset_of(dataset: str) -> dict[str, Any]:
    """The preset of a data set name or folder."""
    return PRESETS[dataset if dataset in NAMED_DATASETS else "folder"]


def resolve_config(dataset: str, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """Preset for `dataset`, then its recipe (or `recipe`), then every override that is not None (with
    --init-from, the model's architecture for those not given), then validation."""
    if overrides.get("init_from") is not None:
        from gancli.gan.training.init_from import architecture_from_source, lineage

        overrides = {**architecture_from_source(overrides["init_from"], overrides, dataset),
                     "lineage": lineage(overrides["init_from"], overrides.get("width"))}
    preset = preset_of(dataset)
    recipe = recipe or preset["recipe"]
    if recipe not in RECIPES:
        raise ConfigError(f"--recipe {recipe!r} is not known; use one of {', '.join(RECIPES)}")
    values = {**preset, **RECIPES[recipe], "recipe": recipe, **{k: v for k, v in overrides.items() if v is not None}}
    cfg = TrainConfig(dataset=dataset, **values)
    validate_config(cfg)
    if cfg.amp and not cuda_training(cfg.device):  # the CPU trains in float32: the config says what runs
        cfg.amp = False
    return cfg


def cuda_training(device: str) -> bool:
    """Whether `device` trains on CUDA here (auto: when torch sees a GPU)."""
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


MAX_SEED = 2 ** 63 - 1  # torch.manual_seed and the samplers take a 64-bit seed
# (name, low, high, low included): every bounded number, checked in one place; NaN and infinities fail each
RANGES = (("b1", 0.0, 1.0, True), ("b2", 0.0, 1.0, True), ("ema_decay", 0.0, 1.0, True),
          ("val_fraction", 0.0, 1.0, True), ("g_dropout", 0.0, 1.0, True))


def check_numbers(cfg: TrainConfig) -> None:
    """Every number of the config is finite and of its kind, and the bounded ones are in range."""
    for f in fields(TrainConfig):
        value, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag} {value} is not a finite number")
    for name, low, high, low_included in RANGES:
        value = getattr(cfg, name)
        if not (low <= value < high if low_included else low < value < high):
            raise ConfigError(f"--{name.replace('_', '-')} {value} must be in {'[' if low_included else '('}{low:g}, "
                              f"{high:g})")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"--seed {cfg.seed} must be between 0 and 2**63 - 1")
    if not str(cfg.out_dir).strip():
        raise ConfigError("--out-dir is empty; pass the folder the run folders go in (default runs)")


def validate_config(cfg: TrainConfig) -> None:
    """Raise ConfigError with one line naming the bad option and what would be accepted."""
    check_numbers(cfg)
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
    for name in ("n_epochs", "batch_size", "latent_dim", "width", "d_depth", "g_depth", "d_steps", "r1_every",
                 "sample_interval"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0.0 < cfg.real_label <= 1.0:
        raise ConfigError(f"--real-label {cfg.real_label} must be in (0, 1]")
    if cfg.limit is not None and cfg.limit < 2:
        raise ConfigError(f"--limit {cfg.limit} must be at least 2 (one image to train on, one to validate)")
    if cfg.freeze_d < 0 or (cfg.freeze_d and cfg.init_from is None):
        raise ConfigError(f"--freeze-d {cfg.freeze_d} needs --init-from and must be >= 0")
    if cfg.device not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"--device {cfg.device!r} is not known; use auto, cuda or cpu")
    if cfg.freeze_d:  # last: D is built from the options checked above
        check_freeze_d(cfg)


def check_freeze_d(cfg: TrainConfig) -> None:
    """--freeze-d may fix D's layers before its output, never all: a D with nothing to train fails at its first step."""
    from gancli.gan.training.init_from import freezable_layers

    most = freezable_layers(cfg)
    if cfg.freeze_d > most:
        raise ConfigError(f"--freeze-d {cfg.freeze_d}: D of --init-from {cfg.init_from} has {most} weight layers before "
                          f"its output; use --freeze-d 0 to {most}")


def dcgan_size_ok(size: int) -> bool:
    return size == 28 or (size >= 32 and size & (size - 1) == 0)


def load_run_config(run_dir: str | Path, n_epochs: int | None = None, device: str | None = None,
                    threads: int | None = None) -> TrainConfig:
    """The config a run was started with; `n_epochs` (the new total), `device` and `threads` (what the machine
    offers now) may change on resume."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise ArtifactError(f"{run_dir} has no {CONFIG_NAME}; --resume takes a run directory written by `gancli train`")
    way_out = "restore it (the settings the run was started with) from a copy, or start a new run"
    cfg = TrainConfig.load(path, way_out)
    if n_epochs is not None:
        cfg.n_epochs = n_epochs
    if device is not None:
        cfg.device = device
    if threads is not None:
        cfg.threads = threads
    try:
        validate_config(cfg)
    except ConfigError as e:
        if n_epochs is not None and "--n-epochs" in str(e):
            raise
        raise ConfigError(f"{path} is damaged: {e}; {way_out}") from e
    return cfg


RESUME_OPTIONS = ("n_epochs", "device", "threads")  # what the machine offers now, and the total to reach


def resume_config(run_dir: str | Path, **options: Any) -> TrainConfig:
    """load_run_config for `--resume`: only RESUME_OPTIONS may be given (not None); any other option is one
    ConfigError line, since the run's own config rules and ignoring the option would be silently wrong."""
    ignored = sorted(k for k, v in options.items() if v is not None and k not in RESUME_OPTIONS)
    if ignored:
        flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
        raise ConfigError(f"--resume continues a run with its own config.json; drop {flags} (only --n-epochs, "
                          f"--device and --threads may change on resume)")
    return load_run_config(run_dir, **{k: options.get(k) for k in RESUME_OPTIONS})
