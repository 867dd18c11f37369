"""One training run's state and its steps: G, D, the EMA of G, both optimizers and the AMP scaler; a D step and
a G step per batch, or per --d-steps batches (loss, D normalisation, DiffAugment, R1, class loss and mode
seeking as configured), and validation losses. The loop (loop.py) drives it; checkpoint.py saves and restores it.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gancli.gan.data import to_model_range
from gancli.gan.networks import build_models
from gancli.gan.training import losses
from gancli.gan.training.augment import diff_augment
from gancli.gan.training.config import TrainConfig
from gancli.gan.training.distributed import DistInfo

LOSS_KEYS = ("d_loss", "g_loss", "d_x", "d_g_z")
GRID_SIZE = 64  # images per sample grid (8 x 8)
GRID_COLUMNS = 8


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


def fixed_grid_inputs(cfg: TrainConfig, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """z (and labels) of the sample grids, from their own seeded generator: they never move the training RNG."""
    z_gen = torch.Generator().manual_seed(cfg.seed + 1)
    if not num_classes:
        return torch.randn(GRID_SIZE, cfg.latent_dim, generator=z_gen), None
    rows = min(num_classes, GRID_SIZE // GRID_COLUMNS * 2)  # at most 16 classes drawn
    z = torch.randn(GRID_COLUMNS, cfg.latent_dim, generator=z_gen).repeat(rows, 1)
    return z, torch.arange(rows).repeat_interleave(GRID_COLUMNS)


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
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.ema.module.state_dict(),
            "ema_updates": self.ema.num_updates, "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": self.epoch, "step": self.step, "history": self.history,
            "rng": rng_states, "world_size": self.info.world_size, "best": self.best,
            "batch": batch, "partial_sums": partial_sums, "partial_seconds": partial_seconds,
        }

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

    def r1_term(self, r1_turn: bool, d_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor | float:
        """The R1 part of D's loss on this batch: on R1's turn its weight times --r1-every (lazy regularisation:
        on average, the weight every batch), else 0."""
        return self.cfg.r1_gamma / 2 * self.cfg.r1_every * self.r1_penalty(d_real, real) if r1_turn else 0.0

    def r1_turn(self) -> bool:
        """Whether this batch's D loss has the R1 penalty: every --r1-every-th batch, from the first, when on."""
        return self.cfg.r1_gamma > 0 and self.step % self.cfg.r1_every == 0

    def g_turn(self) -> bool:
        """Whether the next batch trains G too: every --d-steps-th batch. It counts from the run's step, which
        checkpoints keep, so a resumed run keeps the rhythm."""
        return (self.step + 1) % self.cfg.d_steps == 0

    def train_step(self, real: torch.Tensor, real_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One D update, then on G's turn (g_turn) one G update on the same fakes. A batch that trains D alone
        reports as g_loss G's loss on D's logits before its update (without the class and mode-seeking terms)."""
        cfg = self.cfg
        b = real.shape[0]
        z = torch.randn(b, cfg.latent_dim, device=self.device)
        fake_labels = self.fake_labels(b)
        g_turn = self.g_turn()

        self.opt_D.zero_grad(set_to_none=True)
        with self._autocast(), torch.set_grad_enabled(g_turn):  # D alone needs no graph through G
            fake = self.G_train(z, fake_labels)
        r1_turn = self.r1_turn()
        real = real.detach().requires_grad_(r1_turn)
        if self.joint_d:
            d_real, d_fake, class_loss = self.discriminate(real, real_labels, fake.detach(), fake_labels)
            loss_D = (losses.d_loss(cfg.loss, d_real, d_fake, cfg.real_label) + class_loss
                      + self.r1_term(r1_turn, d_real, real))
            self.scaler.scale(loss_D).backward()
        else:
            # Batch norm in D: real and fake batches go through D separately (each normalised by its
            # own batch statistics, as in DCGAN), each followed by its own backward, which DDP requires.
            d_real, classes = self.judge(real, real_labels)
            loss_D_real = (losses.d_loss_real(cfg.loss, d_real, cfg.real_label)
                           + self.class_loss_of(classes, real_labels) + self.r1_term(r1_turn, d_real, real))
            self.scaler.scale(loss_D_real).backward()
            d_fake, _ = self.judge(fake.detach(), fake_labels)
            loss_D_fake = losses.d_loss_fake(cfg.loss, d_fake)
            self.scaler.scale(loss_D_fake).backward()
            loss_D = loss_D_real + loss_D_fake
        self.scaler.step(self.opt_D)
        if not g_turn:
            self.scaler.update()
            return step_losses(loss_D, losses.g_loss(cfg.loss, d_fake, d_real), d_real, d_fake)

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
        return step_losses(loss_D, loss_G, d_real, d_fake)

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


def step_losses(loss_D: torch.Tensor, loss_G: torch.Tensor, d_real: torch.Tensor,
                d_fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """A step's LOSS_KEYS, detached: both losses and D's mean probability on real and on fake images."""
    return {"d_loss": loss_D.detach(), "g_loss": loss_G.detach(),
            "d_x": torch.sigmoid(d_real.detach()).mean(), "d_g_z": torch.sigmoid(d_fake.detach()).mean()}


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
