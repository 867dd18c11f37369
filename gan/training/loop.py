"""The training loop: epochs of Trainer steps, stop signals, quality scores and the epoch's outputs.

Faults (docs/faults.md): SIGTERM, SIGUSR1 and SIGINT stop training after the current step with a checkpoint
of that step (under torchrun all ranks agree on the step); a file that cannot be written (a full disk) stops
the run with one line and keeps the previous file; a checkpoint or config that cannot be read back is one
line naming it and the way out. Progress is reported through TrainingEvents, which the CLI renders.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler

from gancli.gan.artifact import WEIGHTS_NAME, GeneratorSpec, save_generator, state_bytes
from gancli.gan.data import ImageData, load_images, to_model_range
from gancli.gan.device import cpu_threads, select_device
from gancli.gan.errors import ArtifactError, ConfigError, RunWriteError, TrainingDiverged, TrainingStopped
from gancli.gan.metrics.judge import QualityJudge, make_judge
from gancli.gan.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from gancli.gan.training.config import CONFIG_NAME, TrainConfig
from gancli.gan.training.init_from import DISCRIMINATOR_FORMAT, DISCRIMINATOR_NAME, hours_trained, start_from
from gancli.gan.training.tensorboard import TensorBoardLog
from gancli.gan.training.distributed import (DistInfo, broadcast_object, destroy_process_group, gather_objects,
                                             init_process_group, launched_by_torchrun, max_across_ranks,
                                             raise_together, sum_across_ranks, sync_buffers, weights_digest)
from gancli.gan.training.run_dir import (METRICS_NAME, EpochMetrics, PLOT_NAME, append_log, make_run_dir,
                                         plot_losses, remove_dead_temps, save_grid, write_metrics, writing)
from gancli.gan.training.trainer import Trainer
from gancli.runtime.files import atomic_path, write_text_atomic
from gancli.runtime.faults import StopSignals, signal_name

# Signals that stop training after the current step, with a checkpoint of it. SIGUSR1 is what Slurm
# sends ahead of the time limit with `--signal=USR1@SECONDS`.
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None), signal.SIGINT) if s is not None)
WRITE_FAILED = 1 << 10  # a stop code above every signal number: rank 0 could not write a sample grid


class TrainingEvents:
    """What training reports as it goes; this base says nothing (the Python API). `gancli train` renders them."""

    def message(self, text: str) -> None:
        """A line of the run's log (it is in log.txt too)."""

    def epoch_started(self, epoch: int, n_epochs: int, batches: int, done: int) -> None:
        """Epoch `epoch` (1-based) of `n_epochs` starts, `done` of its `batches` already done (a resume)."""

    def step_done(self, d_loss: float, g_loss: float, images_per_second: float) -> None:
        """One batch is done."""


def agreed_stop(info: DistInfo, stop: StopSignals, failure: RunWriteError | None = None) -> int:
    """0 to go on, else why to stop (a signal number, or WRITE_FAILED), the same on every rank: under
    torchrun one int is all-reduced, so a signal that reached one rank stops all at the same step."""
    return max_across_ranks(info, WRITE_FAILED if failure is not None else stop.signum or 0)


def generator_spec(cfg: TrainConfig, epochs: int, class_names: list[str], quality: dict | None,
                   images_this_run: int, history: list[dict]) -> GeneratorSpec:
    started = cfg.lineage or {"init_from": None, "weights_sha256": None, "images_seen_before": 0}
    seen = {"images_this_run": images_this_run,
            "images_seen": None if started["images_seen_before"] is None  # an older model that did not count
            else started["images_seen_before"] + images_this_run,
            "train_hours": round(hours_trained(started, history), 3)}
    return GeneratorSpec(arch=cfg.arch, latent_dim=cfg.latent_dim, channels=cfg.channels, img_size=cfg.img_size,
                         width=cfg.width, dataset=cfg.dataset_name, epochs=epochs, seed=cfg.seed,
                         g_dropout=cfg.g_dropout, g_depth=cfg.g_depth, class_names=class_names, quality=quality,
                         lineage={**started, **seen})


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
                                   f"{last_good}; lower --lr-g / --lr-d or check the data, then --resume or start again")


def train(cfg: TrainConfig, resume: str | Path | None = None, events: TrainingEvents | None = None) -> Path:
    """Train `cfg` (or continue `resume`) and return the run directory. Works alone or under torchrun.

    SIGTERM, SIGUSR1 and SIGINT (StopSignals, while this runs in the main thread) stop it after the
    current step: the checkpoint then holds that step and TrainingStopped says how to resume.
    """
    info = launched_by_torchrun()
    device = init_process_group(info, select_device(cfg.device))
    try:
        events = events if info.is_main and events is not None else TrainingEvents()
        # Ctrl-C twice stops a single process at once (the previous checkpoint stays); torchrun forwards its
        # own signal to every worker, so there a second one changes nothing
        at_once = (signal.SIGINT,) if not info.enabled else ()
        with StopSignals(STOP_SIGNALS, escalate=at_once) as stop:
            return _train(cfg, resume, events, device, info, stop)
    finally:
        destroy_process_group(info)


def _train(cfg: TrainConfig, resume: str | Path | None, events: TrainingEvents, device: torch.device,
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
    trainer = Trainer(cfg, device, info, data.class_names)
    notes: list[str] = []
    if resume is not None:  # read before anything is written: a bad checkpoint leaves the run as it was
        load_checkpoint(trainer, Path(resume))
        if trainer.epoch >= cfg.n_epochs:
            raise ConfigError(f"{resume} already has {trainer.epoch} epochs; pass a larger --n-epochs to train on")
    elif cfg.init_from is not None:  # before the run folder exists: weights that do not fit leave nothing behind
        start_from(trainer, cfg.init_from, cfg.freeze_d, notes.append)
    run_dir, failure = Path(resume) if resume is not None else None, None
    if info.is_main and run_dir is None:
        try:
            run_dir = make_run_dir(Path(cfg.out_dir), cfg)
        except RunWriteError as e:
            failure = e
    raise_together(info, failure)  # rank 0's write failures stop every rank, here and below
    run_dir = broadcast_object(info, run_dir)
    if info.is_main:
        remove_dead_temps(run_dir)
        try:
            with writing(run_dir / CONFIG_NAME, run_dir):
                write_text_atomic(run_dir / CONFIG_NAME, cfg.to_json())
            if resume is not None:
                within = f", batch {trainer.batch}" if trainer.batch else ""
                append_log(run_dir, f"resumed at epoch {trainer.epoch}{within} (step {trainer.step}) on {device}",
                           events.message)
            else:
                log_data(run_dir, data, device, info, events.message)
            for note in notes:
                append_log(run_dir, note, events.message)
        except RunWriteError as e:
            failure = e
    raise_together(info, failure)

    # rank 0 alone writes events; a resumed run hides those its killed run wrote after the checkpoint
    board = TensorBoardLog(run_dir, trainer.step if resume is not None else None) if info.is_main else None
    try:
        run_epochs(trainer, data, run_dir, events, stop, board)
    finally:
        if board is not None:
            board.close()
    check_ranks_agree(trainer, run_dir, events)
    return run_dir


def log_data(run_dir: Path, data: ImageData, device: torch.device, info: DistInfo, say) -> None:
    where = f"{info.world_size} processes on {device.type}" if info.enabled else f"device {device}"
    append_log(run_dir, f"data: {data.source}: {data.train.shape[0]} train, {data.val.shape[0]} validation images "
                        f"of {tuple(data.train.shape[1:])}; {where}", say)
    if data.class_names:
        append_log(run_dir, f"conditional on {len(data.class_names)} classes: {', '.join(data.class_names)}", say)
    if data.skipped:
        append_log(run_dir, f"skipped {len(data.skipped)} unreadable file(s)", say)
    for path in data.skipped:
        append_log(run_dir, f"  skipped: {path}")


def check_ranks_agree(trainer: Trainer, run_dir: Path, events: TrainingEvents) -> None:
    """Under DDP every rank must end with the same generator; a mismatch is a bug, never shipped silently."""
    info = trainer.info
    if not info.enabled:
        return
    digests = gather_objects(info, weights_digest(trainer.G))
    if len(set(digests)) != 1:
        raise TrainingDiverged(f"ranks ended with different generator weights ({', '.join(d[:12] for d in digests)}); "
                               f"this is a gancli bug, please report it")
    if info.is_main:
        append_log(run_dir, f"all {info.world_size} ranks hold identical generator weights (sha256 {digests[0][:16]})", events.message)


def run_epochs(trainer: Trainer, data: ImageData, run_dir: Path, events: TrainingEvents,
               stop: StopSignals | None = None, board: TensorBoardLog | None = None) -> None:
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
            judge = make_judge(cfg, data, device, lambda line: append_log(run_dir, line, events.message))
    images_per_rank = train_images.shape[0] // info.world_size
    n_batches = batches_per_epoch(images_per_rank, cfg.batch_size)
    while trainer.epoch < cfg.n_epochs:
        epoch = trainer.epoch
        start, sums, seconds_before = trainer.take_partial_epoch()
        if start >= n_batches:
            raise ArtifactError(f"{run_dir / CHECKPOINT_NAME} stopped at batch {start} of an epoch, but the data "
                                f"now make {n_batches} batches an epoch; resume with the same data")
        events.epoch_started(epoch + 1, cfg.n_epochs, n_batches, start)
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
            events.step_done(step_losses["d_loss"].item(), step_losses["g_loss"].item(), rate)
            if board is not None:
                board.step(trainer.step, {k: v.item() for k, v in step_losses.items()}, rate)
            code = agreed_stop(info, stop, grid_failure)
            if code == WRITE_FAILED:
                raise_together(info, grid_failure)
            if code and i + 1 < n_batches:  # at the last batch the epoch is finished and saved first
                save_checkpoint(trainer, run_dir, batch=i + 1, sums=sums,
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
                     seconds_before + time.perf_counter() - started, events, board)
        code = agreed_stop(info, stop)
        if code and trainer.epoch < cfg.n_epochs:
            raise TrainingStopped(
                f"stopped by {signal_name(code)} after epoch {trainer.epoch}/{cfg.n_epochs} (step {trainer.step}); "
                f"{run_dir / CHECKPOINT_NAME} holds it; continue with `gancli train --resume {run_dir}`", code)


def finish_epoch(trainer: Trainer, run_dir: Path, val_images: torch.Tensor, val_labels: torch.Tensor | None,
                 judge: QualityJudge | None, train_means: dict[str, float], seconds: float, events: TrainingEvents,
                 board: TensorBoardLog | None = None) -> None:
    """Validate, score and write the epoch's outputs on rank 0; the checkpoint goes last, so a crash
    before it redoes the whole epoch. The artifact is replaced only by a better-scoring EMA generator
    (or every epoch when nothing is scored). A file that cannot be written stops the run on every rank
    with one RunWriteError line, before the checkpoint."""
    bad = [name for name, p in trainer.ema.module.named_parameters() if not torch.isfinite(p).all()]
    if bad:  # an update overflowed after the epoch's last loss was computed: never ship a NaN generator
        raise TrainingDiverged(f"G's weights became non-finite ({bad[0]}) at step {trainer.step} (epoch {trainer.epoch}); "
                               f"this epoch's generator was not written; lower --lr-g / --lr-d, then start again")
    failure = None
    if trainer.info.is_main:
        try:
            write_epoch_outputs(trainer, run_dir, val_images, val_labels, judge, train_means, seconds, events, board)
        except RunWriteError as e:
            if not trainer.info.enabled:
                raise
            failure = e
    raise_together(trainer.info, failure)
    save_checkpoint(trainer, run_dir)


def write_epoch_outputs(trainer: Trainer, run_dir: Path, val_images: torch.Tensor, val_labels: torch.Tensor | None,
                        judge: QualityJudge | None, train_means: dict[str, float], seconds: float,
                        events: TrainingEvents, board: TensorBoardLog | None = None) -> None:
    """Rank 0's part of finish_epoch: metrics row, maybe the artifact, grid, metrics.csv, loss.png, TensorBoard."""
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
        with writing(run_dir / DISCRIMINATOR_NAME, run_dir), atomic_path(run_dir / DISCRIMINATOR_NAME) as tmp:
            tmp.write_bytes(state_bytes(trainer.D.state_dict(), DISCRIMINATOR_FORMAT))  # --init-from's D
        with writing(run_dir / WEIGHTS_NAME, run_dir):
            save_generator(trainer.ema.module,
                           generator_spec(cfg, trainer.epoch, trainer.class_names, trainer.best,
                                          trainer.step * cfg.batch_size * trainer.info.world_size,
                                          trainer.history), run_dir)
    grid = run_dir / "samples" / f"epoch{trainer.epoch:03d}.png"
    with writing(grid, run_dir):
        save_grid(trainer.ema.module, trainer.fixed_z, trainer.fixed_labels, grid)
    with writing(run_dir / METRICS_NAME, run_dir):
        write_metrics(run_dir, trainer.history)
    with writing(run_dir / PLOT_NAME, run_dir):
        plot_losses(run_dir, trainer.history, f"{judge.metric} ({judge.feature_network})" if judge else "not scored")
    if board is not None:
        board.epoch(trainer.step, asdict(row), grid)
    score_text = "  ".join(f"{k} {v:.4g}" for k, v in scores.items()) if scores else ""
    kept = "  (kept)" if scores and improved else ""
    append_log(run_dir,
               f"epoch {trainer.epoch}/{cfg.n_epochs}: D {row.train_d_loss:.3f} (val {row.val_d_loss:.3f})  "
               f"G {row.train_g_loss:.3f} (val {row.val_g_loss:.3f})  D(x) {row.train_d_x:.2f}  "
               f"D(G(z)) {row.train_d_g_z:.2f}  {score_text}{kept}  {row.seconds:.1f}s", events.message)


def score_quality(trainer: Trainer, judge: QualityJudge | None) -> dict[str, float]:
    """The judge's scores of the EMA generator this epoch, or {} when it is not an --eval-every epoch.
    The last epoch is always scored, so the shipped generator is the best of what was scored."""
    cfg = trainer.cfg
    if judge is None or (trainer.epoch % cfg.eval_every and trainer.epoch != cfg.n_epochs):
        return {}
    return judge.score(trainer.ema.module, cfg.latent_dim, cfg.eval_images, trainer.num_classes, cfg.seed + 3,
                       trainer.device)
