"""The training loop: a GAN with Adam (loss, D normalisation, TTUR, DiffAugment and R1 as configured),
EMA of G, quality scores, per-epoch checkpoints, metrics, plots and grids.

A run directory (`runs/00003-cats-dcgan/`) holds:
    config.json            resolved TrainConfig, written before the first step
    log.txt                what happened: data source, split sizes, skipped files, resumes
    metrics.csv            one row per epoch: train and validation D loss, G loss, D(x), D(G(z)), quality score
    loss.png               the curves, redrawn each epoch
    samples/               grids from a fixed z every --sample-interval batches and at each epoch end
    checkpoint.pt          G, D, EMA, both optimizers, AMP scaler, RNG state, epoch, step, history; when
                           taken mid-epoch (a stop signal) also the batch reached and its loss sums
    generator.safetensors  the best-scoring EMA generator (the artifact that export and eval read)
    generator.json
Every file is written atomically, so a crash leaves the previous epoch's files intact, and
`--resume` continues from the last checkpoint bit-identically on the CPU.

Faults (README, "Faults: what is guaranteed"): SIGTERM, SIGUSR1 and SIGINT stop training after the
current step with a checkpoint of that step (StopSignals; under torchrun all ranks agree on the step);
a file that cannot be written (a full disk) stops the run with one line and keeps the previous file;
a checkpoint or config that cannot be read back is one line naming it and the way out.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import pickle
import re
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torchvision.utils import save_image

from gancli.gan import losses
from gancli.gan.artifact import WEIGHTS_NAME, GeneratorSpec, save_generator
from gancli.gan.augment import diff_augment
from gancli.gan.config import TrainConfig, validate_config
from gancli.gan.data import ImageData, load_images, to_model_range
from gancli.gan.distributed import (DistInfo, broadcast_object, cpu_threads, destroy_process_group, gather_objects,
                                   init_process_group, launched_by_torchrun, max_across_ranks, select_device,
                                   sum_across_ranks, sync_buffers, weights_digest)
from gancli.gan.errors import ArtifactError, ConfigError, GanError, RunWriteError, TrainingDiverged, TrainingStopped
from gancli.runtime.files import atomic_path, process_alive, write_text_atomic
from gancli.gan.networks import build_models
from gancli.gan.quality import QualityJudge, make_judge

CONFIG_NAME = "config.json"
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
PLOT_NAME = "loss.png"
LOG_NAME = "log.txt"
GRID_SIZE = 64  # images per sample grid (8 x 8)
GRID_COLUMNS = 8
CHECKPOINT_FORMAT = "gancli-checkpoint"
# 1: the first with a format; checkpoints of gancli <= 0.2.0 have none and are read as epoch-boundary ones
CHECKPOINT_FORMAT_VERSION = 1
CHECKPOINT_KEYS = ("G", "D", "G_ema", "ema_updates", "opt_G", "opt_D", "scaler", "epoch", "step", "history", "rng",
                   "world_size")
LOSS_KEYS = ("d_loss", "g_loss", "d_x", "d_g_z")
# Signals that stop training after the current step, with a checkpoint of it. SIGUSR1 is what Slurm
# sends ahead of the time limit with `--signal=USR1@SECONDS`.
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None), signal.SIGINT) if s is not None)
WRITE_FAILED = 1 << 10  # a stop code above every signal number: rank 0 could not write a sample grid
TEMP_NAME = re.compile(r"^\.(.+)\.tmp-\d+(\.[^.]+)?$")  # runtime.files.temp_path's `.STEM.tmp-PID.SUFFIX`


@dataclass
class EpochMetrics:
    epoch: int
    step: int
    train_d_loss: float
    train_g_loss: float
    train_d_x: float  # mean D(x) on real images: near real_label when D wins
    train_d_g_z: float  # mean D(G(z)) on fakes before D's update: near 0 when D wins
    val_d_loss: float
    val_g_loss: float
    val_d_x: float
    val_d_g_z: float
    seconds: float
    quality: float | None = None  # the judge's score of the EMA generator (lower is better), when scored
    quality_is: float | None = None  # classifier IS alongside it, where the judge has classes


class EMA:
    """Exponential moving average of G's weights (stylegan2-ada keeps G_ema the same way).

    The decay ramps up as (1 + n) / (10 + n) so short runs are not dominated by the random init;
    buffers (batch-norm running stats) are copied, not averaged.
    """

    def __init__(self, G: nn.Module, decay: float):
        self.module = _frozen_copy(G)
        self.decay = decay
        self.num_updates = 0

    @torch.no_grad()
    def update(self, G: nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for ema_p, p in zip(self.module.parameters(), G.parameters()):
            ema_p.lerp_(p, 1.0 - decay)
        for ema_b, b in zip(self.module.buffers(), G.buffers()):
            ema_b.copy_(b)


def _frozen_copy(G: nn.Module) -> nn.Module:
    return copy.deepcopy(G).eval().requires_grad_(False)


# ----------------------------------------------------------------------------- faults


class StopSignals:
    """While its `with` block runs (in the main thread), SIGTERM, SIGUSR1 and SIGINT only ask training to
    stop: `signum` records the first, and the loop stops after the step in progress, saving it.

    Later signals change nothing (torchrun forwards its own SIGTERM or SIGINT to every worker), except
    a second SIGINT in a single process: Ctrl-C twice raises KeyboardInterrupt at once, with no save
    (the previous checkpoint stays). Outside the main thread no handler can be set, and it never stops.
    """

    def __init__(self, escalate_sigint: bool = True):
        self.signum: int | None = None
        self.escalate_sigint = escalate_sigint
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        elif signum == signal.SIGINT and self.escalate_sigint:
            raise KeyboardInterrupt


def agreed_stop(info: DistInfo, stop: StopSignals, failure: RunWriteError | None = None) -> int:
    """0 to go on, else why to stop (a signal number, or WRITE_FAILED), the same on every rank: under
    torchrun one int is all-reduced, so a signal that reached one rank stops all at the same step."""
    return max_across_ranks(info, WRITE_FAILED if failure is not None else stop.signum or 0)


def raise_together(info: DistInfo, error: GanError | None) -> None:
    """Raise rank 0's `error` (None: nothing failed) on every rank, so that no rank waits in a collective
    for one that stopped. Alone: raise it."""
    if info.enabled:
        message = broadcast_object(info, str(error) if error is not None else None)
        if message is not None and error is None:
            error = RunWriteError(message)
    if error is not None:
        raise error


@contextlib.contextmanager
def writing(path: Path, run_dir: Path) -> Iterator[None]:
    """Turn a failed write of `path` (a full disk, a read-only folder) into one RunWriteError line: what
    failed, that the previous file is kept (every write is atomic) and how to go on."""
    try:
        yield
    except OSError as e:
        if e.filename and (match := TEMP_NAME.match(Path(e.filename).name)):
            path = Path(e.filename).parent / f"{match.group(1)}{match.group(2) or ''}"  # the file the temp was for
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        if (run_dir / CHECKPOINT_NAME).is_file():
            then = f"continue with `gancli train --resume {run_dir}`"
        else:
            then = "start the run again (no epoch was saved)"
        raise RunWriteError(f"cannot write {path} ({e.strerror or e}); {kept}; free some space (or make "
                            f"{run_dir} writable), then {then}") from e


def remove_dead_temps(run_dir: Path) -> None:
    """Delete the temp files (`.NAME.tmp-PID.SUFFIX`) that a killed process left in the run folder while
    writing; a live process's are left alone."""
    for folder in (run_dir, run_dir / "samples"):
        for path in folder.glob(".*.tmp-*"):
            match = re.search(r"\.tmp-(\d+)", path.name)
            if match and TEMP_NAME.match(path.name) and path.is_file() and not process_alive(int(match.group(1))):
                path.unlink(missing_ok=True)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# ----------------------------------------------------------------------------- run directories


def next_run_dir(out_dir: Path, cfg: TrainConfig) -> Path:
    """`out_dir/00007-cats-dcgan`: one more than the highest number already there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in out_dir.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cfg.dataset_name}-{cfg.arch}")
    return out_dir / f"{max(numbers, default=-1) + 1:05d}-{name}"


def make_run_dir(out_dir: Path, cfg: TrainConfig) -> Path:
    """Create and return next_run_dir; a failure (a full disk) is one RunWriteError line."""
    try:
        run_dir = next_run_dir(out_dir, cfg)
        run_dir.mkdir(parents=True)
    except OSError as e:
        raise RunWriteError(f"cannot create a run folder in {out_dir} ({e.strerror or e}); free some space or pass "
                            f"another --out-dir") from e
    return run_dir


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


def append_log(run_dir: Path, message: str, console: Console | None = None) -> None:
    with writing(run_dir / LOG_NAME, run_dir), open(run_dir / LOG_NAME, "a") as f:
        f.write(message + "\n")
    if console is not None:
        console.print(message, highlight=False)


# ----------------------------------------------------------------------------- outputs


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(EpochMetrics)])
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / METRICS_NAME, buf.getvalue())


def plot_losses(run_dir: Path, history: list[dict], quality_metric: str = "not scored") -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_d, ax_q) = plt.subplots(1, 3, figsize=(16, 4))
    for key, label, style in [("train_d_loss", "D train", "C0-"), ("val_d_loss", "D val", "C0--"),
                              ("train_g_loss", "G train", "C1-"), ("val_g_loss", "G val", "C1--")]:
        ax_loss.plot(epochs, [row[key] for row in history], style, marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="losses")
    ax_loss.legend()
    for key, label, style in [("train_d_x", "D(x) train", "C2-"), ("val_d_x", "D(x) val", "C2--"),
                              ("train_d_g_z", "D(G(z)) train", "C3-"), ("val_d_g_z", "D(G(z)) val", "C3--")]:
        ax_d.plot(epochs, [row[key] for row in history], style, marker="o", label=label)
    ax_d.set(xlabel="epoch", ylabel="mean sigmoid(D)", ylim=(0, 1), title="discriminator outputs")
    ax_d.legend()
    scored = [row for row in history if row.get("quality") is not None]
    ax_q.plot([row["epoch"] for row in scored], [row["quality"] for row in scored], "C4-", marker="o")
    ax_q.set(xlabel="epoch", ylabel="lower is better", title=f"quality: {quality_metric}")
    fig.tight_layout()
    with atomic_path(run_dir / PLOT_NAME) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


@torch.no_grad()
def save_grid(G_ema: nn.Module, fixed_z: torch.Tensor, fixed_labels: torch.Tensor | None, path: Path) -> None:
    """8 images a row; a conditional G gets one row per class (the same 8 z in every row)."""
    images = G_ema(fixed_z, fixed_labels).float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_image(images, tmp, nrow=8, normalize=True, value_range=(-1, 1))


def generator_spec(cfg: TrainConfig, epochs: int, class_names: list[str], quality: dict | None) -> GeneratorSpec:
    return GeneratorSpec(arch=cfg.arch, latent_dim=cfg.latent_dim, channels=cfg.channels, img_size=cfg.img_size,
                         width=cfg.width, dataset=cfg.dataset_name, epochs=epochs, seed=cfg.seed,
                         g_dropout=cfg.g_dropout, class_names=class_names, quality=quality)


def fixed_grid_inputs(cfg: TrainConfig, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """z (and labels) of the sample grids, from their own seeded generator: they never move the training RNG."""
    z_gen = torch.Generator().manual_seed(cfg.seed + 1)
    if not num_classes:
        return torch.randn(GRID_SIZE, cfg.latent_dim, generator=z_gen), None
    rows = min(num_classes, GRID_SIZE // GRID_COLUMNS * 2)  # at most 16 classes drawn
    z = torch.randn(GRID_COLUMNS, cfg.latent_dim, generator=z_gen).repeat(rows, 1)
    return z, torch.arange(rows).repeat_interleave(GRID_COLUMNS)


# ----------------------------------------------------------------------------- the loop


class Trainer:
    """One training run: models, optimizers and everything a checkpoint must restore.

    Under torchrun, G and D are wrapped in DistributedDataParallel (`G_train`, `D_train`): gradients
    are averaged across ranks, and at each forward rank 0's buffers are broadcast, so batch norm
    running stats and spectral norm's power-iteration vectors stay identical on every rank. Batch
    norm normalises with per-process batch statistics (not SyncBatchNorm): each rank sees a full
    --batch-size of real or of fake images, exactly as one process would, at no extra communication.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, info: DistInfo = DistInfo(),
                 class_names: list[str] | None = None):
        self.cfg = cfg
        self.device = device
        self.info = info
        self.class_names = list(class_names or [])
        self.num_classes = len(self.class_names)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.G, self.D = build_models(cfg, self.num_classes)
        self.G.to(device)
        self.D.to(device)
        self.G_train, self.D_train = self.G, self.D
        if info.enabled:
            device_ids = [device.index] if device.type == "cuda" else None
            self.G_train = DistributedDataParallel(self.G, device_ids=device_ids)
            self.D_train = DistributedDataParallel(self.D, device_ids=device_ids)
        # z and dropout differ per rank; each rank's stream is restored from checkpoints
        torch.manual_seed(cfg.seed + info.rank)
        self.ema = EMA(self.G, cfg.ema_decay)
        betas = (cfg.b1, cfg.b2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)
        # A D without batch norm judges each image alone, so real and fake share one forward pass
        # (and relativistic losses, which compare them, need that).
        self.joint_d = not (cfg.arch == "dcgan" and cfg.d_batch_norm)
        self.class_loss = bool(self.num_classes and cfg.class_loss > 0)
        self.amp_dtype = amp_dtype(cfg.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype is not None)
        self.epoch = 0  # epochs completed
        self.step = 0  # batches completed (per rank)
        # a checkpoint taken mid-epoch: batches of epoch `epoch` done, their loss sums, their seconds
        self.batch = 0
        self.partial_sums: dict[str, float] | None = None
        self.partial_seconds = 0.0
        self.history: list[dict] = []
        self.best: dict | None = None  # {"metric", "value", "epoch", "num_images"} of the shipped EMA generator
        fixed_z, fixed_labels = fixed_grid_inputs(cfg, self.num_classes)
        self.fixed_z = fixed_z.to(device)
        self.fixed_labels = fixed_labels.to(device) if fixed_labels is not None else None

    # --- checkpoints

    def rng_state(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def state_dict(self, rng_states: list[dict[str, torch.Tensor]], batch: int = 0,
                   partial_sums: list[dict[str, float]] | None = None, partial_seconds: float = 0.0) -> dict:
        """Everything to continue exactly; `rng_states` holds every rank's RNG state, in rank order. Taken
        mid-epoch, `batch` says how many batches of epoch `epoch` + 1 are done, `partial_sums` holds each
        rank's loss sums over them and `partial_seconds` the time they took."""
        return {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.ema.module.state_dict(),
            "ema_updates": self.ema.num_updates, "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": self.epoch, "step": self.step, "history": self.history,
            "rng": rng_states, "world_size": self.info.world_size, "best": self.best,
            "batch": batch, "partial_sums": partial_sums, "partial_seconds": partial_seconds,
        }

    def save_checkpoint(self, run_dir: Path, batch: int = 0, sums: dict[str, float] | None = None,
                        seconds: float = 0.0) -> None:
        """Collective: every rank sends its RNG state (and, mid-epoch, its loss sums), rank 0 writes the
        file. A failed write keeps the previous file and raises RunWriteError on every rank."""
        per_rank = gather_objects(self.info, ({k: v.cpu() for k, v in self.rng_state().items()}, sums))
        failure = None
        if self.info.is_main:
            state = self.state_dict([rng for rng, _ in per_rank], batch,
                                    [s for _, s in per_rank] if batch else None, seconds)
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
        raise_together(self.info, failure)

    def load_checkpoint(self, run_dir: Path) -> None:
        path = run_dir / CHECKPOINT_NAME
        if not path.is_file():
            raise ArtifactError(f"{run_dir} has no {CHECKPOINT_NAME} (no epoch finished yet); start a new run instead")
        state = read_checkpoint(path, self.device)
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.ema.module.load_state_dict(state["G_ema"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
            self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise ArtifactError(f"{path} is corrupt or from another config ({str(e).splitlines()[0]}); "
                                f"start a new run") from e
        if state["world_size"] != self.info.world_size:
            raise ConfigError(f"{path} was written by {state['world_size']} process(es) but this run has "
                              f"{self.info.world_size}; resume with the same torchrun --nproc-per-node")
        self.ema.num_updates = state["ema_updates"]
        self.epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
        self.best = state.get("best")
        self.batch = state.get("batch", 0)
        if self.batch:
            self.partial_sums = state["partial_sums"][self.info.rank]
            self.partial_seconds = state["partial_seconds"]
        rng = state["rng"][self.info.rank]
        torch.set_rng_state(rng["cpu"].cpu())
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)

    def take_partial_epoch(self) -> tuple[int, dict[str, float], float]:
        """Where epoch `epoch` starts: (batches done, their loss sums, their seconds) once after resuming
        from a mid-epoch checkpoint, else (0, zeros, 0)."""
        start, sums, seconds = self.batch, self.partial_sums, self.partial_seconds
        self.batch, self.partial_sums, self.partial_seconds = 0, None, 0.0
        return start, dict(sums) if sums else dict.fromkeys(LOSS_KEYS, 0.0), seconds

    # --- steps

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.diffaugment) if self.cfg.diffaugment else x

    def judge(self, images: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's logits on augmented `images`, and its class logits when the class loss is on (else None)."""
        with self._autocast():
            if not self.class_loss:
                return self.D_train(self.augment(images), labels).float(), None
            logits, classes = self.D_train(self.augment(images), labels, True)
        return logits.float(), classes.float()

    def fake_labels(self, b: int) -> torch.Tensor | None:
        """Uniform labels for a batch of fakes; the second half repeats the first, so each pair (i, i + b/2)
        shares a label but not z, which the mode-seeking term compares."""
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, ((b + 1) // 2,), device=self.device).repeat(2)[:b]

    def class_loss_of(self, classes: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor | float:
        """AC-GAN's auxiliary loss: cross-entropy of D's class head against the labels, weighted."""
        return self.cfg.class_loss * F.cross_entropy(classes, labels) if classes is not None else 0.0

    def discriminate(self, real: torch.Tensor, real_labels: torch.Tensor | None, fake: torch.Tensor,
                     fake_labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """D's logits on real and fake images (both augmented) in one pass, for a D without batch norm,
        and the class loss on the real half (D learns classes from real images only)."""
        b = real.shape[0]
        labels = torch.cat([real_labels, fake_labels]) if real_labels is not None else None
        logits, classes = self.judge(torch.cat([real, fake]), labels)
        return logits[:b], logits[b:], self.class_loss_of(classes[:b] if classes is not None else None, real_labels)

    def r1_penalty(self, d_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """R1 (Mescheder et al., 2018): squared norm of D's gradient at real images. The gradient is taken
        of the AMP-scaled sum so fp16 does not underflow, then unscaled."""
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        (grad,) = torch.autograd.grad(d_real.sum() * scale, real, create_graph=True)
        return (grad.float() / scale).square().sum(dim=(1, 2, 3)).mean()

    def train_step(self, real: torch.Tensor, real_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One D update then one G update on the same fakes."""
        cfg = self.cfg
        b = real.shape[0]
        z = torch.randn(b, cfg.latent_dim, device=self.device)
        fake_labels = self.fake_labels(b)

        self.opt_D.zero_grad(set_to_none=True)
        with self._autocast():
            fake = self.G_train(z, fake_labels)
        if self.joint_d:
            real = real.detach().requires_grad_(cfg.r1_gamma > 0)
            d_real, d_fake, class_loss = self.discriminate(real, real_labels, fake.detach(), fake_labels)
            loss_D = losses.d_loss(cfg.loss, d_real, d_fake, cfg.real_label) + class_loss
            if cfg.r1_gamma > 0:
                loss_D = loss_D + cfg.r1_gamma / 2 * self.r1_penalty(d_real, real)
            self.scaler.scale(loss_D).backward()
        else:
            # Batch norm in D: real and fake batches go through D separately (each normalised by its
            # own batch statistics, as in DCGAN), each followed by its own backward, which DDP requires.
            d_real, classes = self.judge(real, real_labels)
            loss_D_real = losses.d_loss_real(cfg.loss, d_real, cfg.real_label) + self.class_loss_of(classes, real_labels)
            self.scaler.scale(loss_D_real).backward()
            d_fake, _ = self.judge(fake.detach(), fake_labels)
            loss_D_fake = losses.d_loss_fake(cfg.loss, d_fake)
            self.scaler.scale(loss_D_fake).backward()
            loss_D = loss_D_real + loss_D_fake
        self.scaler.step(self.opt_D)

        self.opt_G.zero_grad(set_to_none=True)
        if cfg.loss in losses.RELATIVISTIC:
            d_real_g, d_fake_g, _ = self.discriminate(real.detach(), real_labels, fake, fake_labels)
            loss_G = losses.g_loss(cfg.loss, d_fake_g, d_real_g)
        else:
            d_fake_g, classes = self.judge(fake, fake_labels)
            loss_G = losses.g_loss(cfg.loss, d_fake_g) + self.class_loss_of(classes, fake_labels)
        if self.num_classes and cfg.mode_seeking > 0:
            loss_G = loss_G + cfg.mode_seeking * mode_seeking_penalty(fake, z)
        self.scaler.scale(loss_G).backward()
        self.scaler.step(self.opt_G)
        self.scaler.update()
        self.ema.update(self.G)
        return {"d_loss": loss_D.detach(), "g_loss": loss_G.detach(),
                "d_x": torch.sigmoid(d_real.detach()).mean(), "d_g_z": torch.sigmoid(d_fake.detach()).mean()}

    @torch.no_grad()
    def validate(self, val: torch.Tensor, val_labels: torch.Tensor | None = None) -> dict[str, float]:
        """Losses on held-out real images and on fakes from a fixed z (no augmentation).

        G runs as it ships (eval mode). D normalises each batch by its own statistics, as in
        training: its running stats blend real and fake batches, so eval-mode D would judge
        images by statistics it never trained with. Uses the bare modules, not the DDP
        wrappers, so rank 0 can run it alone.
        """
        cfg = self.cfg
        self.G.eval()
        self.D.eval()
        z_gen = torch.Generator().manual_seed(cfg.seed + 2)
        sums = {"d_loss": 0.0, "g_loss": 0.0, "d_x": 0.0, "d_g_z": 0.0}
        with batch_norm_uses_batch_stats(self.D):
            for start in range(0, val.shape[0], cfg.batch_size):
                real = to_model_range(val[start:start + cfg.batch_size])
                b = real.shape[0]
                z = torch.randn(b, cfg.latent_dim, generator=z_gen).to(self.device)
                labels = val_labels[start:start + b] if val_labels is not None else None
                fake_labels = (torch.randint(self.num_classes, (b,), generator=z_gen).to(self.device)
                               if self.num_classes else None)
                with self._autocast():
                    d_real = self.D(real, labels).float()
                    d_fake = self.D(self.G(z, fake_labels), fake_labels).float()
                sums["d_loss"] += b * losses.d_loss(cfg.loss, d_real, d_fake, cfg.real_label).item()
                sums["g_loss"] += b * losses.g_loss(cfg.loss, d_fake, d_real).item()
                sums["d_x"] += torch.sigmoid(d_real).sum().item()
                sums["d_g_z"] += torch.sigmoid(d_fake).sum().item()
        self.G.train()
        self.D.train()
        n = max(val.shape[0], 1)
        return {k: v / n for k, v in sums.items()}


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
    fmt, version = state.get("format"), state.get("format_version", 0)
    if (fmt is None and not set(CHECKPOINT_KEYS) & set(state)) or fmt not in (None, CHECKPOINT_FORMAT):
        raise ArtifactError(f"{path} is not a gancli checkpoint (another program's file?); {way_out}")
    if not isinstance(version, int):
        raise ArtifactError(f"{path} has format version {version!r}, not an integer; {way_out}")
    if version > CHECKPOINT_FORMAT_VERSION:
        raise ArtifactError(f"{path} was written by a newer gancli (checkpoint format {version}; this gancli reads up "
                            f"to {CHECKPOINT_FORMAT_VERSION}); upgrade gancli to resume it")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ArtifactError(f"{path} is incomplete (no {', '.join(missing)}); {way_out}")
    return state


def amp_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training: float16 on CUDA with `amp`, else None (float32).

    Not bfloat16 on the CPU, though on a CPU with native bf16 (AVX-512 BF16) a step runs ~1.6x faster
    (benchmarks/bench_train.py): measured on MNIST (sngan, D depth 2, 1 thread, seed 0), bf16 autocast scored
    FCD 91 and 113 after epochs 1 and 2 where float32 scored 18 and 10; it does not train at equal quality.
    """
    return torch.float16 if amp and device.type == "cuda" else None


def mode_seeking_penalty(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """MSGAN (Mao et al., 2019): the inverse of how far apart two images of one label lie relative to
    their z, so a conditional G cannot ignore z and draw one image per class. Pairs are (i, i + b/2)."""
    half, fake = fake.shape[0] // 2, fake.float()
    ratio = ((fake[:half] - fake[half:2 * half]).abs().mean(dim=(1, 2, 3))
             / (z[:half] - z[half:2 * half]).abs().mean(dim=1))
    return 1.0 / (ratio.mean() + 1e-5)


@contextlib.contextmanager
def batch_norm_uses_batch_stats(module: nn.Module) -> Iterator[None]:
    """Batch norm layers normalise with each batch's statistics but leave their running stats alone."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in layers]
    for m in layers:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(layers, saved):
            m.training, m.track_running_stats = training, track


def batches_per_epoch(n_images: int, batch_size: int) -> int:
    # Full batches only: a ragged last batch of 1 would break batch norm, and equal batches keep
    # the per-step statistics comparable. Fewer images than one batch still make one batch.
    return max(1, n_images // batch_size)


def epoch_indices(n_images: int, cfg: TrainConfig, info: DistInfo, epoch: int) -> torch.Tensor:
    """This rank's share of epoch `epoch`'s shuffle, which depends only on (seed, epoch).

    torch's DistributedSampler, with one replica when not distributed: resumed runs see the same
    order, and ranks see disjoint, equally long parts of it.
    """
    sampler = DistributedSampler(range(n_images), num_replicas=info.world_size, rank=info.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=True)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler))


def check_finite(losses: dict[str, torch.Tensor], epoch: int, batch: int, run_dir: Path) -> None:
    for name in ("d_loss", "g_loss"):
        value = losses[name].item()
        if not math.isfinite(value):
            kept = run_dir / CHECKPOINT_NAME
            last_good = f"the last good checkpoint {kept} is kept" if kept.exists() else "no epoch had finished, so no checkpoint exists"
            raise TrainingDiverged(f"{name.replace('_', ' ')} became {value} in epoch {epoch + 1}, batch {batch + 1}; "
                                   f"{last_good}; lower --lr or check the data, then --resume or start again")


def train(cfg: TrainConfig, resume: str | Path | None = None, console: Console | None = None) -> Path:
    """Train `cfg` (or continue `resume`) and return the run directory. Works alone or under torchrun.

    SIGTERM, SIGUSR1 and SIGINT (StopSignals, while this runs in the main thread) stop it after the
    current step: the checkpoint then holds that step and TrainingStopped says how to resume.
    """
    info = launched_by_torchrun()
    device = init_process_group(info, select_device(cfg.device))
    try:
        console = console if info.is_main and console is not None else Console(quiet=not info.is_main)
        with StopSignals(escalate_sigint=not info.enabled) as stop:
            return _train(cfg, resume, console, device, info, stop)
    finally:
        destroy_process_group(info)


def _train(cfg: TrainConfig, resume: str | Path | None, console: Console, device: torch.device,
           info: DistInfo, stop: StopSignals) -> Path:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    else:
        torch.set_num_threads(cfg.threads or cpu_threads())
    if cfg.r1_gamma > 0 and info.enabled:
        raise ConfigError("--r1-gamma needs double backward, which DistributedDataParallel does not support; "
                          "drop --r1-gamma under torchrun")
    data = load_images(cfg)
    code = agreed_stop(info, stop)
    if code:  # before any step: nothing new to save
        where = f"{resume} is as it was; continue with `gancli train --resume {resume}`" if resume is not None \
            else "no run directory was made"
        raise TrainingStopped(f"stopped by {signal_name(code)} before training began; {where}", code)
    run_dir, failure = Path(resume) if resume is not None else None, None
    if info.is_main and run_dir is None:
        try:
            run_dir = make_run_dir(Path(cfg.out_dir), cfg)
        except RunWriteError as e:
            failure = e
    raise_together(info, failure)  # rank 0's write failures stop every rank, here and below
    run_dir = broadcast_object(info, run_dir)

    trainer = Trainer(cfg, device, info, data.class_names)
    if resume is not None:  # read before anything is written: a bad checkpoint leaves the run as it was
        trainer.load_checkpoint(run_dir)
        if trainer.epoch >= cfg.n_epochs:
            raise ConfigError(f"{run_dir} already has {trainer.epoch} epochs; pass a larger --n-epochs to train on")
    if info.is_main:
        remove_dead_temps(run_dir)
        try:
            with writing(run_dir / CONFIG_NAME, run_dir):
                write_text_atomic(run_dir / CONFIG_NAME, cfg.to_json())
            if resume is not None:
                within = f", batch {trainer.batch}" if trainer.batch else ""
                append_log(run_dir, f"resumed at epoch {trainer.epoch}{within} (step {trainer.step}) on {device}",
                           console)
            else:
                log_data(run_dir, data, device, info, console)
        except RunWriteError as e:
            failure = e
    raise_together(info, failure)

    run_epochs(trainer, data, run_dir, console, stop)
    check_ranks_agree(trainer, run_dir, console)
    console.print(f"[green]done:[/green] {trainer.epoch} epochs in {run_dir}")
    return run_dir


def log_data(run_dir: Path, data: ImageData, device: torch.device, info: DistInfo, console: Console) -> None:
    where = f"{info.world_size} processes on {device.type}" if info.enabled else f"device {device}"
    append_log(run_dir, f"data: {data.source}: {data.train.shape[0]} train, {data.val.shape[0]} validation images "
                        f"of {tuple(data.train.shape[1:])}; {where}", console)
    if data.class_names:
        append_log(run_dir, f"conditional on {len(data.class_names)} classes: {', '.join(data.class_names)}", console)
    append_log(run_dir, f"skipped {len(data.skipped)} unreadable file(s)", console)
    for path in data.skipped:
        append_log(run_dir, f"  skipped: {path}")


def check_ranks_agree(trainer: Trainer, run_dir: Path, console: Console) -> None:
    """Under DDP every rank must end with the same generator; a mismatch is a bug, never shipped silently."""
    info = trainer.info
    if not info.enabled:
        return
    digests = gather_objects(info, weights_digest(trainer.G))
    if len(set(digests)) != 1:
        raise TrainingDiverged(f"ranks ended with different generator weights ({', '.join(d[:12] for d in digests)}); "
                               f"this is a gancli bug, please report it")
    if info.is_main:
        append_log(run_dir, f"all {info.world_size} ranks hold identical generator weights (sha256 {digests[0][:16]})", console)


def run_epochs(trainer: Trainer, data: ImageData, run_dir: Path, console: Console,
               stop: StopSignals | None = None) -> None:
    """Train from where `trainer` is to cfg.n_epochs. After each step (and each epoch's outputs) the ranks
    agree whether to stop (agreed_stop: one int, a no-op alone): a stop mid-epoch saves a checkpoint of
    that step and raises TrainingStopped; the artifact changes only at epoch ends."""
    cfg, device, info = trainer.cfg, trainer.device, trainer.info
    stop = stop if stop is not None else StopSignals()  # not entered: only errors stop it
    train_images = data.train.to(device)
    val_images = data.val.to(device)
    train_labels = data.train_labels.to(device) if data.train_labels is not None else None
    val_labels = data.val_labels.to(device) if data.val_labels is not None else None
    judge = None
    if info.is_main and cfg.eval_every:
        with torch.random.fork_rng(devices=[]):  # building a feature network must not move the training RNG
            judge = make_judge(data, (cfg.channels, cfg.img_size, cfg.img_size), device,
                               lambda line: append_log(run_dir, line, console))
    images_per_rank = train_images.shape[0] // info.world_size
    n_batches = batches_per_epoch(images_per_rank, cfg.batch_size)
    progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), console=console)
    with progress:
        task = progress.add_task("train", total=n_batches, epoch="", stats="")
        while trainer.epoch < cfg.n_epochs:
            epoch = trainer.epoch
            start, sums, seconds_before = trainer.take_partial_epoch()
            if start >= n_batches:
                raise ArtifactError(f"{run_dir / CHECKPOINT_NAME} stopped at batch {start} of an epoch, but the data "
                                    f"now make {n_batches} batches an epoch; resume with the same data")
            progress.reset(task, total=n_batches, completed=start, epoch=f"{epoch + 1}/{cfg.n_epochs}", stats="")
            # the epoch's order depends only on (seed, epoch): a resumed epoch skips the batches done
            order = epoch_indices(train_images.shape[0], cfg, info, epoch).to(device)
            started = time.perf_counter()
            for i in range(start, n_batches):
                batch = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                real = to_model_range(train_images[batch])
                step_losses = trainer.train_step(real, train_labels[batch] if train_labels is not None else None)
                check_finite(step_losses, epoch, i, run_dir)
                trainer.step += 1
                for k in sums:
                    sums[k] += step_losses[k].item()
                grid_failure = None
                if trainer.step % cfg.sample_interval == 0 and info.is_main:
                    path = run_dir / "samples" / f"step{trainer.step:07d}.png"
                    try:
                        with writing(path, run_dir):
                            save_grid(trainer.ema.module, trainer.fixed_z, trainer.fixed_labels, path)
                    except RunWriteError as e:
                        if not info.enabled:
                            raise
                        grid_failure = e  # raised on every rank at once, below
                rate = (i + 1 - start) * real.shape[0] * info.world_size / (time.perf_counter() - started)
                progress.update(task, advance=1, stats=f"D {step_losses['d_loss'].item():.3f}  "
                                                       f"G {step_losses['g_loss'].item():.3f}  {rate:,.0f} img/s")
                code = agreed_stop(info, stop, grid_failure)
                if code == WRITE_FAILED:
                    raise_together(info, grid_failure)
                if code and i + 1 < n_batches:  # at the last batch the epoch is finished and saved first
                    trainer.save_checkpoint(run_dir, batch=i + 1, sums=sums,
                                            seconds=seconds_before + time.perf_counter() - started)
                    raise TrainingStopped(
                        f"stopped by {signal_name(code)} after step {trainer.step} (epoch {epoch + 1}/{cfg.n_epochs}, "
                        f"batch {i + 1}/{n_batches}); {run_dir / CHECKPOINT_NAME} holds that step and the generator "
                        f"files are unchanged; continue with `gancli train --resume {run_dir}`", code)
            trainer.epoch += 1
            sync_buffers(info, trainer.G, trainer.D, trainer.ema.module)
            sums = sum_across_ranks(info, sums)
            finish_epoch(trainer, run_dir, val_images, val_labels, judge,
                         {k: v / (n_batches * info.world_size) for k, v in sums.items()},
                         seconds_before + time.perf_counter() - started, progress.console)
            code = agreed_stop(info, stop)
            if code and trainer.epoch < cfg.n_epochs:
                raise TrainingStopped(
                    f"stopped by {signal_name(code)} after epoch {trainer.epoch}/{cfg.n_epochs} (step {trainer.step}); "
                    f"{run_dir / CHECKPOINT_NAME} holds it; continue with `gancli train --resume {run_dir}`", code)


def finish_epoch(trainer: Trainer, run_dir: Path, val_images: torch.Tensor, val_labels: torch.Tensor | None,
                 judge: QualityJudge | None, train_means: dict[str, float], seconds: float, console: Console) -> None:
    """Validate, score and write the epoch's outputs on rank 0; the checkpoint goes last, so a crash
    before it redoes the whole epoch. The artifact is replaced only by a better-scoring EMA generator
    (or every epoch when nothing is scored). A file that cannot be written stops the run on every rank
    with one RunWriteError line, before the checkpoint."""
    failure = None
    if trainer.info.is_main:
        try:
            write_epoch_outputs(trainer, run_dir, val_images, val_labels, judge, train_means, seconds, console)
        except RunWriteError as e:
            if not trainer.info.enabled:
                raise
            failure = e
    raise_together(trainer.info, failure)
    trainer.save_checkpoint(run_dir)


def write_epoch_outputs(trainer: Trainer, run_dir: Path, val_images: torch.Tensor, val_labels: torch.Tensor | None,
                        judge: QualityJudge | None, train_means: dict[str, float], seconds: float,
                        console: Console) -> None:
    """Rank 0's part of finish_epoch: metrics row, maybe the artifact, grid, metrics.csv, loss.png."""
    cfg = trainer.cfg
    scores = score_quality(trainer, judge)
    row = EpochMetrics(epoch=trainer.epoch, step=trainer.step,
                       **{f"train_{k}": v for k, v in train_means.items()},
                       **{f"val_{k}": v for k, v in trainer.validate(val_images, val_labels).items()},
                       seconds=round(seconds, 3), quality=scores.get(judge.metric) if scores else None,
                       quality_is=scores.get("is") if scores else None)
    trainer.history.append(asdict(row))
    improved = judge is None or (scores and (trainer.best is None or row.quality < trainer.best["value"]))
    if scores and improved:
        trainer.best = {"metric": f"{judge.metric} ({judge.feature_network})", "value": row.quality,
                        "epoch": trainer.epoch, "num_images": cfg.eval_images,
                        **{k: v for k, v in scores.items() if k != judge.metric}}
    if improved:
        with writing(run_dir / WEIGHTS_NAME, run_dir):
            save_generator(trainer.ema.module,
                           generator_spec(cfg, trainer.epoch, trainer.class_names, trainer.best), run_dir)
    grid = run_dir / "samples" / f"epoch{trainer.epoch:03d}.png"
    with writing(grid, run_dir):
        save_grid(trainer.ema.module, trainer.fixed_z, trainer.fixed_labels, grid)
    with writing(run_dir / METRICS_NAME, run_dir):
        write_metrics(run_dir, trainer.history)
    with writing(run_dir / PLOT_NAME, run_dir):
        plot_losses(run_dir, trainer.history, f"{judge.metric} ({judge.feature_network})" if judge else "not scored")
    score_text = "  ".join(f"{k} {v:.4g}" for k, v in scores.items()) if scores else ""
    kept = "  (kept)" if scores and improved else ""
    console.print(
        f"epoch {trainer.epoch}/{cfg.n_epochs}: D {row.train_d_loss:.3f} (val {row.val_d_loss:.3f})  "
        f"G {row.train_g_loss:.3f} (val {row.val_g_loss:.3f})  D(x) {row.train_d_x:.2f}  "
        f"D(G(z)) {row.train_d_g_z:.2f}  {score_text}{kept}  {row.seconds:.1f}s", highlight=False)


def score_quality(trainer: Trainer, judge: QualityJudge | None) -> dict[str, float]:
    """The judge's scores of the EMA generator this epoch, or {} when it is not an --eval-every epoch.
    The last epoch is always scored, so the shipped generator is the best of what was scored."""
    cfg = trainer.cfg
    if judge is None or (trainer.epoch % cfg.eval_every and trainer.epoch != cfg.n_epochs):
        return {}
    return judge.score(trainer.ema.module, cfg.latent_dim, cfg.eval_images, trainer.num_classes, cfg.seed + 3,
                       trainer.device)
