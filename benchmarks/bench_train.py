"""Training speed: images per second of `gancli train` against a plain PyTorch loop of the same model
and batch (the seeds' way: torch's default threads, BCE, one D and one G step per batch), each idle
and with one core held by a busy neighbour process.

    python benchmarks/bench_train.py --arch mlp --limit 2000 --rounds 3

Targets: gancli idle >= 0.9x the plain loop idle; gancli with a busy core >= 0.4x its idle rate.
It also times the plain loop under bf16 autocast against fp32 on one thread: whether the CPU's bf16
units would make training faster.
Rounds are interleaved and medians printed; compare only within one run.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from rich.console import Console

from gancli.gan.training.config import resolve_config
from gancli.gan.data import load_images, to_model_range
from gancli.gan.networks import build_models
from gancli.gan.training.loop import train


def busy_neighbour(stop: multiprocessing.Event) -> None:
    """Holds one core at 100 % (a pure-Python spin, as another user's job would)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def plain_loop_rate(cfg, images: torch.Tensor, threads: int, bf16: bool = False) -> float:
    """The seeds' loop: default threads (all cores), one D and one G step per batch; images/s over one epoch.
    `bf16`: the same steps under CPU autocast to bfloat16 (what gancli would gain from it)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    G, D = build_models(cfg)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.b1, cfg.b2))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.b1, cfg.b2))
    n_batches = images.shape[0] // cfg.batch_size
    started = time.perf_counter()
    for i in range(n_batches):
        real = to_model_range(images[i * cfg.batch_size:(i + 1) * cfg.batch_size])
        z = torch.randn(real.shape[0], cfg.latent_dim)
        with autocast:
            fake = G(z)
            d_real, d_fake = D(torch.cat([real, fake.detach()])).float().split(real.shape[0])
        loss_D = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        opt_D.zero_grad()
        loss_D.backward()
        opt_D.step()
        with autocast:
            loss_G = -D(fake).float().mean()
        opt_G.zero_grad()
        loss_G.backward()
        opt_G.step()
    return n_batches * cfg.batch_size / (time.perf_counter() - started)


def gancli_rate(cfg) -> float:
    """`gancli train` for one epoch (its default threads), timed from its own per-epoch seconds."""
    with tempfile.TemporaryDirectory() as out:
        cfg.out_dir = out
        run_dir = train(cfg, console=Console(quiet=True))
        rows = (run_dir / "metrics.csv").read_text().splitlines()
        seconds = float(rows[1].split(",")[rows[0].split(",").index("seconds")])
    n_images = (cfg.limit or 0) - round(cfg.val_fraction * (cfg.limit or 0))
    return n_images // cfg.batch_size * cfg.batch_size / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--arch", default="mlp")
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    cfg = resolve_config(args.dataset, arch=args.arch, limit=args.limit, n_epochs=1, eval_every=0, device="cpu")
    images = load_images(cfg).train
    cores = len(os.sched_getaffinity(0))
    rates: dict[str, list[float]] = {k: [] for k in ("plain idle", "gancli idle", "plain busy", "gancli busy",
                                                      "fp32 1 thread", "bf16 1 thread")}
    for _ in range(args.rounds):
        for busy in (False, True):
            stop = multiprocessing.Event()
            neighbour = multiprocessing.Process(target=busy_neighbour, args=(stop,)) if busy else None
            if neighbour:
                neighbour.start()
                time.sleep(0.5)
            suffix = "busy" if busy else "idle"
            rates[f"plain {suffix}"].append(plain_loop_rate(cfg, images, cores))
            rates[f"gancli {suffix}"].append(gancli_rate(resolve_config(
                args.dataset, arch=args.arch, limit=args.limit, n_epochs=1, eval_every=0, device="cpu")))
            if neighbour:
                stop.set()
                neighbour.join()
        for bf16 in (False, True):  # one thread each: what autocast changes, apart from threading
            rates[f"{'bf16' if bf16 else 'fp32'} 1 thread"].append(plain_loop_rate(cfg, images, 1, bf16))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{args.arch} on {args.dataset}, {args.limit} images, batch {cfg.batch_size}, {cores} cores, "
          f"medians of {args.rounds} rounds (images/s):")
    for k, v in med.items():
        print(f"  {k:12s} {v:9,.0f}")
    print(f"gancli idle / plain idle: {med['gancli idle'] / med['plain idle']:.2f}  (target >= 0.9)")
    print(f"gancli busy / gancli idle: {med['gancli busy'] / med['gancli idle']:.2f}  (target >= 0.4)")
    print(f"plain busy / plain idle: {med['plain busy'] / med['plain idle']:.2f}  (the seeds' way)")
    print(f"bf16 autocast / fp32, one thread: {med['bf16 1 thread'] / med['fp32 1 thread']:.2f}  "
          f"(speed only: gancli keeps fp32 on the CPU, see gan/train.amp_dtype)")


if __name__ == "__main__":
    main()
