"""The checkpoint: everything a run needs to continue exactly (G, D, the EMA of G, both optimizers, the AMP
scaler, every rank's RNG state, epoch, step, history), in one weights-only torch file written atomically.

Taken mid-epoch (a stop signal), it also holds the batch reached and the loss sums so far. A file that cannot be
read back (empty, truncated, foreign, from a newer gancli) is one ArtifactError line naming it and the way out.
Checkpoints of gancli <= 0.2.0 carry no format and are read as epoch-boundary ones.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch

from gancli.gan.errors import ArtifactError, ConfigError, RunWriteError
from gancli.gan.training.distributed import gather_objects, raise_together
from gancli.gan.training.run_dir import CHECKPOINT_NAME, writing
from gancli.gan.training.trainer import Trainer
from gancli.runtime.files import atomic_path
from gancli.runtime.jsonfile import check_format


CHECKPOINT_FORMAT = "gancli-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1  # 1: the first with a format
CHECKPOINT_KEYS = ("G", "D", "G_ema", "ema_updates", "opt_G", "opt_D", "scaler", "epoch", "step", "history", "rng",
                   "world_size")


def save_checkpoint(trainer: Trainer, run_dir: Path, batch: int = 0, sums: dict[str, float] | None = None,
                    seconds: float = 0.0) -> None:
    """Collective: every rank sends its RNG state (and, mid-epoch, its loss sums), rank 0 writes the
    file. A failed write keeps the previous file and raises RunWriteError on every rank."""
    per_rank = gather_objects(trainer.info, ({k: v.cpu() for k, v in trainer.rng_state().items()}, sums))
    failure = None
    if trainer.info.is_main:
        state = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
                 **trainer.state_dict([rng for rng, _ in per_rank], batch,
                                      [s for _, s in per_rank] if batch else None, seconds)}
        # serialised in memory, then written by Python: torch's own file writer reports a full disk
        # as an opaque RuntimeError (TorchScript's aborts the process)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        path = run_dir / CHECKPOINT_NAME
        try:
            with writing(path, run_dir), atomic_path(path) as tmp:
                tmp.write_bytes(buffer.getbuffer())
        except RunWriteError as e:
            failure = e
    raise_together(trainer.info, failure)


def load_checkpoint(trainer: Trainer, run_dir: Path) -> None:
    """Restore `trainer` from the run's checkpoint, read and checked before anything changes."""
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise ArtifactError(f"{run_dir} has no {CHECKPOINT_NAME} (no epoch finished yet); start a new run instead")
    state = read_checkpoint(path, trainer.device)
    try:
        trainer.G.load_state_dict(state["G"])
        trainer.D.load_state_dict(state["D"])
        trainer.ema.module.load_state_dict(state["G_ema"])
        trainer.opt_G.load_state_dict(state["opt_G"])
        trainer.opt_D.load_state_dict(state["opt_D"])
        trainer.scaler.load_state_dict(state["scaler"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise ArtifactError(f"{path} is corrupt or from another config ({str(e).splitlines()[0]}); "
                            f"start a new run") from e
    if state["world_size"] != trainer.info.world_size:
        raise ConfigError(f"{path} was written by {state['world_size']} process(es) but this run has "
                          f"{trainer.info.world_size}; resume with the same torchrun --nproc-per-node")
    trainer.ema.num_updates = state["ema_updates"]
    trainer.epoch, trainer.step, trainer.history = state["epoch"], state["step"], state["history"]
    trainer.best = state.get("best")
    trainer.batch = state.get("batch", 0)
    if trainer.batch:
        trainer.partial_sums = state["partial_sums"][trainer.info.rank]
        trainer.partial_seconds = state["partial_seconds"]
    rng = state["rng"][trainer.info.rank]
    torch.set_rng_state(rng["cpu"].cpu())
    if trainer.device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), trainer.device)


def read_checkpoint(path: Path, device: torch.device) -> dict:
    """The state in `path`, checked to be a gancli checkpoint this gancli can read; else one ArtifactError
    line naming the file (empty, truncated, damaged, foreign, or from a newer gancli) and the way out."""
    way_out = "restore it from a copy, or start a new run (the run's generator files do not depend on it)"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch.load reports damage as OSError, RuntimeError, EOFError, UnpicklingError, ...
        if path.stat().st_size == 0:
            why = "is empty"
        elif not zipfile.is_zipfile(path):
            why = "is truncated, or not a torch file at all"
        elif isinstance(e, pickle.UnpicklingError):
            why = "holds objects that no gancli checkpoint has (another program's file?)"
        else:
            why = f"is damaged ({(str(e).strip().splitlines() or [type(e).__name__])[0][:120]})"
        raise ArtifactError(f"{path} {why}; {way_out}") from e
    if not isinstance(state, dict):
        raise ArtifactError(f"{path} is not a gancli checkpoint (it holds a {type(state).__name__}); {way_out}")
    if state.get("format") is None and not set(CHECKPOINT_KEYS) & set(state):
        raise ArtifactError(f"{path} is not a gancli checkpoint (another program's file?); {way_out}")
    check_format(state, str(path), CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, ArtifactError, way_out,
                 "a gancli checkpoint", legacy=True)
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ArtifactError(f"{path} is incomplete (no {', '.join(missing)}); {way_out}")
    return state
