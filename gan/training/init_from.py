"""`--init-from MODEL`: start a run from a trained model's weights (G, its EMA and D) with fresh optimizers,
to continue training on the same data or to fine-tune on another folder (StyleGAN2-ADA's `--resume=ffhq256`;
`--freeze-d N` keeps D's first N layers fixed, FreezeD of Mo et al., 2020, for a few hundred images).

MODEL is a shipped model's name, a run folder (its checkpoint's G, EMA G and D) or a model folder: generator.json
+ generator.safetensors (the EMA generator), config.json (what built it), discriminator.safetensors (D) and,
in a training state, generator-train.safetensors (G itself; without it G starts as the EMA generator). The
architecture comes from the model: options that shape the networks and were not given are taken from its
config.json, and one given with another value is one ConfigError line naming it, but for a larger --width, which
grows a DCGAN's G and D from the model's weights (widen.py). The run records where it started and the images its
weights had seen (`lineage`, in config.json and generator.json).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from gancli.gan.artifact import SPEC_NAME, WEIGHTS_NAME, load_spec, load_verified_state
from gancli.gan.errors import ArtifactError, ConfigError
from gancli.gan.training.config import CONFIG_NAME as SOURCE_CONFIG_NAME
from gancli.gan.training.config import TrainConfig, preset_of
from gancli.gan.training.run_dir import CHECKPOINT_NAME
from gancli.models import models_dir, names_a_path, shipped_generators

DISCRIMINATOR_NAME = "discriminator.safetensors"
DISCRIMINATOR_FORMAT = "gancli-discriminator"
TRAIN_GENERATOR_NAME = "generator-train.safetensors"
# the options that shape G and D: a model's weights fit only networks built with its values
ARCHITECTURE = ("arch", "latent_dim", "img_size", "channels", "width", "g_depth", "g_dropout", "spectral_norm",
                "d_batch_norm", "d_depth", "conditional")


def resolve_source(model: str | Path) -> Path:
    """The folder of `model`: a shipped model's name (a bare name is never a folder of the working directory), or
    a path (names_a_path) to a run or model folder; else one ConfigError line."""
    folder = Path(model).expanduser() if names_a_path(model) else models_dir() / model
    if (folder / SPEC_NAME).is_file() and (folder / SOURCE_CONFIG_NAME).is_file():
        return folder
    if not names_a_path(model):
        raise ConfigError(f"--init-from {model}: no shipped model has that name (shipped models: "
                          f"{', '.join(shipped_generators())}); a run or model folder needs a path, such as ./{model}")
    raise ConfigError(f"--init-from {model}: not a run or model folder with {SPEC_NAME} and {SOURCE_CONFIG_NAME}; "
                      f"pass a `gancli train` run folder or a shipped model's name")


def source_options(folder: Path) -> dict[str, Any]:
    """The architecture options of the model in `folder`, from its config.json (older configs lack d_depth and g_depth: 1)."""
    from gancli.gan.training.config import TrainConfig

    cfg = TrainConfig.load(folder / SOURCE_CONFIG_NAME, "pass a model folder written by gancli")
    return {name: getattr(cfg, name) for name in ARCHITECTURE}


def architecture_from_source(model: str | Path, options: dict[str, Any], dataset: str) -> dict[str, Any]:
    """`options` with every architecture option that was not given (None) taken from `model`; ConfigError naming
    each one that was given with a value the model's weights cannot take, or the image format the model would
    impose on `dataset` unasked (check_image_format)."""
    folder = resolve_source(model)
    theirs = source_options(folder)
    differ = [f"--{name.replace('_', '-')} {options[name]} here, {theirs[name]} in the model"
              + (" (a model grows wider, never narrower)" if name == "width" and theirs["arch"] == "dcgan" else "")
              for name in ARCHITECTURE if options.get(name) is not None and options[name] != theirs[name]
              and not (name == "width" and grows(theirs, options[name]))]
    if differ:
        raise ConfigError(f"--init-from {model} has another architecture: {'; '.join(differ)}; drop those flags "
                          f"(the model's own are used) or start without --init-from")
    check_image_format(model, theirs, options, dataset)
    return {**options, **{name: value for name, value in theirs.items() if options.get(name) is None}}


def grows(theirs: dict[str, Any], width: int) -> bool:
    """Whether a model of options `theirs` can be grown to `width` (widen.py): a DCGAN, to more channels."""
    return theirs["arch"] == "dcgan" and width > theirs["width"]


def image_format(options: dict[str, Any]) -> str:
    """The image size and colour of a config's (or preset's) options, as "28x28 grey"."""
    return f"{options['img_size']}x{options['img_size']} {'grey' if options['channels'] == 1 else 'RGB'}"


def check_image_format(model: str | Path, theirs: dict[str, Any], options: dict[str, Any], dataset: str) -> None:
    """A model whose image size or channels differ from those of `dataset`'s preset would silently resize and
    recolour the data to its own (the cats as 28x28 grey): one ConfigError line, unless --img-size and --channels
    ask for the model's."""
    preset = preset_of(dataset)
    unasked = [f"--{name.replace('_', '-')} {theirs[name]}" for name in ("img_size", "channels")
               if options.get(name) is None and theirs[name] != preset[name]]
    if unasked:
        raise ConfigError(f"--init-from {model} makes {image_format(theirs)} images, but --dataset {dataset} trains at "
                          f"{image_format(preset)}; pass {' '.join(unasked)} to train at the model's, or start from a "
                          f"model of {image_format(preset)}")


def lineage(model: str | Path, width: int | None = None) -> dict[str, Any]:
    """What a run started from: the model (an absolute path by its last part only, so that shipped files name no
    folder of this machine), its generator's weights hash, the images its weights had seen (None when its files
    do not say) and, when the run grows it to `width`, the model's width (`grown_from_width`)."""
    from gancli.gan.training.config import without_machine

    folder = resolve_source(model)
    spec = json.loads((folder / SPEC_NAME).read_text())
    earlier = spec.get("lineage") or {}
    grown = {"grown_from_width": spec["width"]} if width is not None and width != spec["width"] else {}
    return {"init_from": without_machine(str(model)), "weights_sha256": spec.get("weights_sha256"),
            "images_seen_before": earlier.get("images_seen"), "train_hours_before": earlier.get("train_hours", 0),
            **grown}


def source_weights(model: str | Path) -> tuple[dict, dict, dict | None]:
    """(G, EMA G, D) state dicts of `model`; D is None when the model carries no discriminator."""
    folder = resolve_source(model)
    checkpoint = folder / CHECKPOINT_NAME
    if checkpoint.is_file():
        from gancli.gan.training.checkpoint import read_checkpoint

        state = read_checkpoint(checkpoint, torch.device("cpu"))
        return state["G"], state["G_ema"], state["D"]
    spec = load_spec(folder)
    ema = load_verified_state(folder / WEIGHTS_NAME, spec.weights_sha256, SPEC_NAME)
    G = read_weights(folder / TRAIN_GENERATOR_NAME) if (folder / TRAIN_GENERATOR_NAME).is_file() else ema
    D = read_weights(folder / DISCRIMINATOR_NAME) if (folder / DISCRIMINATOR_NAME).is_file() else None
    return G, ema, D


def read_weights(path: Path) -> dict:
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors reports damage as SafetensorError, OSError or ValueError
        raise ArtifactError(f"{path} is not a readable safetensors file ({str(e)[:100]}); copy the model again") from e


def start_from(trainer: Any, model: str | Path, freeze_d: int, say) -> None:
    """Load `model`'s weights into a fresh Trainer (its optimizers stay fresh) and freeze D's first layers."""
    G, ema, D = source_weights(model)
    width = source_options(resolve_source(model))["width"]
    if trainer.cfg.width != width:
        from gancli.gan.training.widen import grow_state

        # one seeded draw each for G and its EMA: both gain the same new channels
        G, ema = (grow_state(state, trainer.G, trainer.cfg.seed) for state in (G, ema))
        D = grow_state(D, trainer.D, trainer.cfg.seed + 1) if D is not None else None
        say(f"--width {trainer.cfg.width}: G and D grown from the model's width {width}, computing what its "
            f"networks did")
    try:
        trainer.G.load_state_dict(G)
        trainer.ema.module.load_state_dict(ema)
        if D is not None:
            trainer.D.load_state_dict(D)
    except RuntimeError as e:
        detail = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise ConfigError(f"--init-from {model} does not fit this run's networks ({detail[min(1, len(detail) - 1)][:120]}); "
                          f"a conditional model needs the same number of classes") from e
    # the loaded EMA is already an average: it goes on at the configured decay, without the ramp of a fresh run
    decay = trainer.cfg.ema_decay
    trainer.ema.num_updates = max(0, round((10 * decay - 1) / (1 - decay))) if decay < 1 else 0
    if D is None:
        say(f"--init-from {model}: it carries no {DISCRIMINATOR_NAME}, so D starts from random weights")
    if freeze_d:
        frozen = freeze_first_layers(trainer.D, freeze_d)
        say(f"--freeze-d {freeze_d}: D's first {frozen} weight layers are fixed")


def weight_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers of `module` that hold weights, in forward order. A spectral-normed layer counts once: its weight
    is held by its parametrization, its bias by the layer itself."""
    from torch.nn.utils import parametrize

    return [m for m in module.modules() if parametrize.is_parametrized(m) or (
        not isinstance(m, parametrize.ParametrizationList) and any(True for _ in m.parameters(recurse=False)))]


def freeze_first_layers(D: torch.nn.Module, n: int) -> int:
    """Fix the parameters of D's first `n` layers with weights (in forward order), as FreezeD does; returns how
    many were frozen."""
    layers = weight_layers(D)
    for layer in layers[:n]:
        layer.requires_grad_(False)
    return min(n, len(layers))


def freezable_layers(cfg: TrainConfig) -> int:
    """How many layers --freeze-d may fix in the D of `cfg`: the weight layers before its output, so that its logit
    (and class head) always learn. Counted on a D built on the meta device: shapes only, no memory, no weights."""
    from gancli.gan.networks import build_discriminator

    with torch.device("meta"):
        D = build_discriminator(cfg)
    return len(weight_layers(D.features))


CURVE_NAME = "curve.csv"  # the quality score against the images seen, over every stretch of a long run


def curve_csv(path: Path, history: list[dict], images_before: int | None, images_per_step: int) -> str:
    """curve.csv: the rows already in `path` (earlier stretches), then this run's scored epochs, each at the
    images seen in all (unknown ones, of a model that did not count, are left empty)."""
    rows = path.read_text().splitlines()[1:] if path.is_file() else []
    for row in history:
        if row.get("quality") is not None:
            seen = "" if images_before is None else images_before + row["step"] * images_per_step
            rows.append(f"{seen},{row['quality']}")
    return "images_seen,quality\n" + "".join(line + "\n" for line in rows)


def hours_trained(started: dict | None, history: list[dict]) -> float:
    """The training hours behind a run's weights: those its --init-from source had, plus its own epochs'."""
    return ((started or {}).get("train_hours_before") or 0) + sum(row["seconds"] for row in history) / 3600


def save_training_state(run_dir: Path, out_dir: Path) -> Path:
    """A model folder to continue `run_dir` from with --init-from, from its last checkpoint, weights only (no
    optimizer state): the EMA generator as generator.safetensors + generator.json (its lineage: images seen and
    training hours in all; no quality, which the run's scores gave its kept epoch, not these weights), G as
    generator-train.safetensors, D as discriminator.safetensors, and the run's
    config.json (without the paths of the machine it ran on), metrics.csv, loss.png, last sample grid and
    curve.csv, the score against the images seen, which each stretch extends."""
    import hashlib
    import shutil

    from gancli.gan.artifact import GeneratorSpec, state_bytes, write_pair
    from gancli.gan.training.checkpoint import read_checkpoint
    from gancli.gan.training.config import TrainConfig
    from gancli.runtime.files import write_bytes_atomic, write_text_atomic

    cfg = TrainConfig.load(run_dir / SOURCE_CONFIG_NAME)
    state = read_checkpoint(run_dir / CHECKPOINT_NAME, torch.device("cpu"))
    out_dir.mkdir(parents=True, exist_ok=True)
    images = state["step"] * cfg.batch_size * state["world_size"]
    before = (cfg.lineage or {}).get("images_seen_before") if cfg.init_from else 0
    hours = hours_trained(cfg.lineage, state["history"])
    lineage = {**(cfg.lineage or {"init_from": None, "weights_sha256": None}), "images_seen_before": before,
               "images_this_run": images, "images_seen": None if before is None else before + images,
               "train_hours": round(hours, 3)}
    ema = state_bytes(state["G_ema"], "gancli-generator")
    spec = GeneratorSpec(arch=cfg.arch, latent_dim=cfg.latent_dim, channels=cfg.channels, img_size=cfg.img_size,
                         width=cfg.width, dataset=cfg.dataset_name, epochs=state["epoch"], seed=cfg.seed,
                         g_dropout=cfg.g_dropout, g_depth=cfg.g_depth, class_names=[], quality=None, lineage=lineage,
                         weights_sha256=hashlib.sha256(ema).hexdigest())
    write_pair(out_dir / WEIGHTS_NAME, ema, out_dir / SPEC_NAME, spec.to_json())
    write_bytes_atomic(out_dir / TRAIN_GENERATOR_NAME, state_bytes(state["G"], "gancli-generator"))
    write_bytes_atomic(out_dir / DISCRIMINATOR_NAME, state_bytes(state["D"], DISCRIMINATOR_FORMAT))
    write_text_atomic(out_dir / SOURCE_CONFIG_NAME, cfg.portable().to_json())
    for name in ("metrics.csv", "loss.png"):
        shutil.copyfile(run_dir / name, out_dir / name)
    write_text_atomic(out_dir / CURVE_NAME, curve_csv(out_dir / CURVE_NAME, state["history"], before, cfg.batch_size
                                                      * state["world_size"]))
    grids = sorted((run_dir / "samples").glob("epoch*.png"))
    if grids:
        shutil.copyfile(grids[-1], out_dir / "samples.png")
    return out_dir
