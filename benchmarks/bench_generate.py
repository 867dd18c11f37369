"""How fast `gancli generate` is, against the seeds' way, in one run on one model and one n.

  (a) the seeds' way: torch eager, batch 64, torchvision save_image per image, one thread
  (b) inference alone: z + the same ONNX serving graph through runtime.session, in the layout
      `gancli generate` uses (one 1-thread session per core), nothing written
  (c) encoding and writing alone of the same images (runtime.writer, the same layout and names)
  (d) `gancli generate` itself, as a subprocess (the real path: CLI, workers, manifest, progress)
and prints images/s for each, d/a, and d/limit with limit = 1 / (1/b + 1/c): what a pipeline that
adds nothing to inference and writing would reach. (a)-(d) run interleaved, `--rounds` times;
medians are reported (the host is shared and noisy: compare only within one run).

  python benchmarks/bench_generate.py --model cats -n 2000
  python benchmarks/bench_generate.py --model cats -n 2000 --precision int8
  python benchmarks/bench_generate.py --model mnist -n 100000 --format npz --precision int8
  python benchmarks/bench_generate.py --model cats -n 100000 --parts d --rounds 1

Weights: --model cats is the DCGAN 64px width 64: --artifact DIR, else models/cats-dcgan/ if it has
that architecture (the shipped one has width 32), else random weights with batch-norm statistics
from one batch, so images are textured noise rather than flat grey; --model mnist is the MLP
(shipped weights); --model NAME takes any shipped model as it is. The output says which.

Figures measured with it, and what each step gave: README.md, "Benchmark". File-bound parts wait
for the disk to settle first (see wait_for_settled_disk).
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torch import nn

from disk import SETTLED_FILES_PER_SECOND, wait_for_settled_disk  # benchmarks/disk.py, beside this script
from gancli.export.api import INT8_FILE
from gancli.export.int8 import export_int8_onnx
from gancli.export.onnx import export_onnx
from gancli.export.parity import check_parity
from gancli.gan.artifact import GeneratorSpec, load_generator
from gancli.gan.networks import build_generator
from gancli.models import models_dir, shipped_generators
from gancli.runtime.workers import auto_batch_size, default_workers
from gancli.runtime.latents import latents
from gancli.runtime.metadata import OUTPUT_UINT8_NHWC
from gancli.runtime.session import GeneratorSession
from gancli.runtime.writer import FolderMaker, NPZ_CHUNK, write_image_files, write_npz_chunk

MODELS = {  # the two shipped targets: --model NAME
    "cats": dict(name="cats-dcgan", arch="dcgan", latent_dim=100, channels=3, img_size=64, width=64, dataset="cats"),
    "mnist": dict(name="mnist-mlp", arch="mlp", latent_dim=100, channels=1, img_size=28, width=64, dataset="mnist"),
}
SEEDS_BATCH = 64
IMAGE_POOL = 2_000  # (c) writes real generator images, cycling through this many


def random_generator(cfg: dict) -> tuple[nn.Module, GeneratorSpec]:
    torch.manual_seed(0)
    G = build_generator(cfg["arch"], cfg["latent_dim"], cfg["channels"], cfg["img_size"], cfg["width"])  # self-initialised
    for m in G.modules():  # statistics of one batch: default ones make a random DCGAN output flat grey
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    G.train()
    with torch.no_grad():
        G(torch.randn(512, cfg["latent_dim"]))
    spec = GeneratorSpec(arch=cfg["arch"], latent_dim=cfg["latent_dim"], channels=cfg["channels"],
                         img_size=cfg["img_size"], width=cfg["width"], dataset=cfg["dataset"], epochs=0, seed=0)
    return G.eval(), spec


def load_weights(args: argparse.Namespace) -> tuple[nn.Module, GeneratorSpec, str]:
    """--artifact, else the shipped model when it has the target architecture, else random weights."""
    if args.model not in MODELS:  # a shipped model by its own name, whatever its architecture
        G, spec = load_generator(models_dir() / args.model)
        return G, spec, f"shipped model {args.model} ({spec.arch} {spec.img_size}px width {spec.width}, {spec.epochs} epochs)"
    cfg = MODELS[args.model]
    if args.artifact is not None:
        G, spec = load_generator(args.artifact)
        return G, spec, f"weights from {args.artifact} ({spec.epochs} epochs)"
    shipped = models_dir() / cfg["name"]
    if (shipped / "generator.json").is_file():
        G, spec = load_generator(shipped)
        if (spec.arch, spec.img_size, spec.width) == (cfg["arch"], cfg["img_size"], cfg["width"]):
            return G, spec, f"shipped weights from {shipped} ({spec.epochs} epochs)"
    G, spec = random_generator(cfg)
    return G, spec, (f"RANDOM weights ({cfg['arch']} {cfg['img_size']}px width {cfg['width']}: no trained model of "
                     f"this architecture; images are textured noise, PNGs ~30 % larger than real cats)")


# ---- (a) the seeds' way ----------------------------------------------------------------------------

class Clock:
    """Wall and CPU seconds (this process, user + system) since creation.

    The host is shared: under contention wall time swings by 2x, CPU time per image much less, so
    both are reported; images per CPU-second x cores is what an idle machine would give.
    """

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, self._cpu() - self.cpu


def seeds_way(G: nn.Module, latent_dim: int, n: int, out: Path) -> tuple[float, float]:
    from torchvision.utils import save_image

    torch.set_num_threads(1)
    out.mkdir(parents=True)
    clock = Clock()
    with torch.no_grad():
        for first in range(0, n, SEEDS_BATCH):
            images = G(torch.randn(min(SEEDS_BATCH, n - first), latent_dim))
            for k, image in enumerate(images):
                save_image(image, out / f"{first + k}.png", normalize=True, value_range=(-1, 1))
    return clock.stop()


# ---- (b) and (c) in worker processes, the layout of (d) ----------------------------------------------

def _share(n: int, worker: int, workers: int, unit: int) -> list[np.ndarray]:
    """This worker's batches: every `workers`-th batch of `unit` indices."""
    return [np.arange(s, min(s + unit, n)) for s in range(worker * unit, n, workers * unit)]


def _infer_worker(model: str, n: int, worker: int, workers: int, batch: int) -> tuple[float, float]:
    session = GeneratorSession(model, device="cpu", threads=1)
    latent_dim = session.metadata.latent_dim
    session.images(latents(0, np.arange(batch), latent_dim))  # warm-up, as (d)'s first batch pays it too
    clock = Clock()
    for indices in _share(n, worker, workers, batch):
        session.images(latents(0, indices, latent_dim))
    return clock.stop()


def _write_worker(model: str, n: int, worker: int, workers: int, batch: int, fmt: str, out: str) -> tuple[float, float]:
    import cv2

    cv2.setNumThreads(1)
    session = GeneratorSession(model, device="cpu", threads=1)
    pool = session.images(latents(0, np.arange(min(IMAGE_POOL, n)), session.metadata.latent_dim))
    folders = FolderMaker(Path(out))
    unit = NPZ_CHUNK if fmt == "npz" else batch
    clock = Clock()
    for indices in _share(n, worker, workers, unit):
        images = pool[indices % len(pool)]
        if fmt == "npz":
            write_npz_chunk(folders, indices, images)
        else:
            write_image_files(folders, indices, images, fmt, lambda: False)
    return clock.stop()


def in_workers(fn, workers: int, *args) -> tuple[float, float]:
    """(wall seconds until the slowest worker is done, CPU seconds of all) for their own work, not start-up."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, args[0], args[1], w, workers, *args[2:]) for w in range(workers)]
        results = [f.result() for f in futures]
    return max(wall for wall, _ in results), sum(cpu for _, cpu in results)


# ---- (d) gancli generate -------------------------------------------------------------------------

def _tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            continue
    return total


@functools.cache
def startup_cpu() -> float:
    """CPU seconds of starting the CLI's interpreter and imports, taken off (d)'s CPU time: (b) and (c)
    time their work only, so their CPU-based rates exclude it too."""
    samples = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", "import gancli.cli, gancli.runtime.generate"])
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        samples.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(samples)


def gancli_generate(model: Path, n: int, fmt: str, out: Path, batch: int | None, device: str) -> dict:
    command = [sys.executable, "-m", "gancli.cli", "generate", "-n", str(n), "--out", str(out), "--model", str(model),
               "--device", device, "--format", fmt, "--batch-size", str(batch or "auto")]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, finished = [0], threading.Event()

    def sample() -> None:
        while not finished.is_set():
            peak[0] = max(peak[0], _tree_rss_bytes(proc.pid))
            finished.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # CPU of the CLI and of the workers it waited for
    finished.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    sampler.join()
    found = re.search(r"made ([\d,]+) images in [\d.]+ s: ([\d,]+) images/s", output)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"gancli generate failed:\n{output}")
    made, rate = (int(group.replace(",", "")) for group in found.groups())
    seconds = made / rate
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime - startup_cpu(), "wall_rate": made / wall,
            "peak_rss_mb": peak[0] / 2**20, "line": output.strip().splitlines()[-1]}


def threads_layout(model: Path, n: int, fmt: str, out: Path, batch: int | None) -> tuple[float, float]:
    """The alternative CPU layout, through the same generate(): for choosing the default by measurement."""
    from gancli.runtime.generate import generate

    clock = Clock()
    generate(n, out, model, device="cpu", fmt=fmt, batch_size=batch, layout="threads")
    return clock.stop()


# ---- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shipped = shipped_generators()
    parser.add_argument("--model", choices=sorted(MODELS) + shipped, default="cats",
                        help="cats: DCGAN 64px width 64; mnist: the MLP; or a shipped model by name")
    parser.add_argument("--artifact", type=Path, help="generator artifact or run folder with trained weights")
    parser.add_argument("-n", type=int, default=2_000)
    parser.add_argument("--format", dest="fmt", choices=["png", "jpg", "npz"], default="png")
    parser.add_argument("--batch-size", type=int, help="default: gancli's auto choice")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32",
                        help="serving graph: fp16 weights, or int8 as `gancli export --int8` makes it (export/int8.py), "
                             "checked by its parity bar")
    parser.add_argument("--parts", default="abcd",
                        help="which of a, b, c, d to run; t adds the other layout: ORT on all cores in the "
                             "main thread, overlapped with encoder threads (what CUDA uses)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, help="where images are written (default: a temp folder on /tmp's disk)")
    args = parser.parse_args()

    G, spec, weights = load_weights(args)
    work = Path(tempfile.mkdtemp(prefix="bench-generate-", dir=args.work_dir))
    try:
        run_parts(args, G, spec, weights, work)
    finally:
        print(f"removing {work} ...", flush=True)
        shutil.rmtree(work, ignore_errors=True)  # after the last timing: see run_parts


def run_parts(args: argparse.Namespace, G: nn.Module, spec: GeneratorSpec, weights: str, work: Path) -> None:
    model = work / "generator-uint8.onnx"
    export_onnx(G, spec, model, output_kind=OUTPUT_UINT8_NHWC, fp16=args.precision == "fp16")
    if args.precision == "int8":  # what `gancli export --int8` writes, with its parity bar
        model = work / INT8_FILE
        export_int8_onnx(G, spec, model)
        r = check_parity(G, [model], providers=["CPUExecutionProvider"]).results[0]
        print(f"int8 parity with eager: mean {r.mean_error:.2f}, 99th percentile {r.p99_error:g}, max {r.max_error:g} "
              f"levels (bar: mean <= {r.mean_bar:g}, 99th percentile <= {r.p99_bar:g})")
    workers = default_workers()
    batch = args.batch_size or auto_batch_size("cpu", spec.arch, args.fmt)
    print(f"model: {args.model} ({weights}); serving graph uint8 NHWC {args.precision}; n={args.n} {args.fmt}; "
          f"{workers} workers x 1 thread, batch {batch}; {args.rounds} rounds; writing under {work}")
    rate = wait_for_settled_disk(work)
    print(f"disk: {rate:,.0f} small files/s" + ("" if rate >= SETTLED_FILES_PER_SECOND else
                                                " (NOT settled: file-bound figures below are low)"), flush=True)

    # Per part and round: (wall seconds, CPU seconds) for n images. Nothing is deleted until the end:
    # ext4 skips recently deleted inodes when it allocates new ones, which made file creation 12x
    # slower (0.6 ms instead of 0.05 ms per file, `perf`: recently_deleted) for about a minute after
    # a large delete; so deleting one part's files would slow the next part down.
    times: dict[str, list[tuple[float, float]]] = {part: [] for part in "abcdt"}
    d_runs: list[dict] = []
    for r in range(args.rounds):
        if "a" in args.parts:
            times["a"].append(seeds_way(G, spec.latent_dim, args.n, work / f"a{r}"))
        if "b" in args.parts:
            times["b"].append(in_workers(_infer_worker, workers, str(model), args.n, batch))
        if "c" in args.parts:
            times["c"].append(in_workers(_write_worker, workers, str(model), args.n, batch, args.fmt, str(work / f"c{r}")))
        if "d" in args.parts:
            d_runs.append(gancli_generate(model, args.n, args.fmt, work / f"d{r}", args.batch_size, "cpu"))
            times["d"].append((d_runs[-1]["seconds"], d_runs[-1]["cpu"]))
        if "t" in args.parts:
            times["t"].append(threads_layout(model, args.n, args.fmt, work / f"t{r}", args.batch_size))
        print(f"round {r + 1}: " + ", ".join(f"{p} {args.n / v[-1][0]:,.0f}" for p, v in times.items() if v)
              + " images/s", flush=True)
    report(args, times, d_runs, workers)


def report(args: argparse.Namespace, times: dict[str, list[tuple[float, float]]], d_runs: list[dict], workers: int) -> None:
    threads = {"a": 1, "b": workers, "c": workers, "d": workers, "t": workers}
    wall = {p: statistics.median(args.n / w for w, _ in v) for p, v in times.items() if v}
    # what an idle machine would give: images per CPU-second times the cores the part can use
    idle = {p: statistics.median(args.n / c * threads[p] for _, c in v) for p, v in times.items() if v}
    labels = {"a": "(a) seeds' way: eager batch 64 + save_image, 1 thread",
              "b": f"(b) inference alone (z + ORT, {workers} x 1-thread sessions)",
              "c": f"(c) encoding + writing alone ({args.fmt}, {workers} processes)",
              "d": "(d) gancli generate (from its call, start-up included)",
              "t": "(t) generate() with layout=threads instead (in-process)"}
    print(f"\n{'images/s, median of rounds':60s} {'wall':>9s} {'CPU-based':>10s}   wall per round")
    for part, label in labels.items():
        if part in wall:
            rounds = ", ".join(f"{args.n / w:,.0f}" for w, _ in times[part])
            print(f"  {label:58s} {wall[part]:9,.0f} {idle[part]:10,.0f}   {rounds}")
    if d_runs:
        print(f"  (d) wall clock from the shell, interpreter start included: "
              f"{statistics.median(x['wall_rate'] for x in d_runs):,.0f} images/s; "
              f"peak RSS of the process tree {max(x['peak_rss_mb'] for x in d_runs):,.0f} MB")
        print(f"  last closing line: {d_runs[-1]['line']}")
    for name, rates in (("wall", wall), ("CPU-based", idle)):
        line = []
        if "a" in rates and "d" in rates:
            line.append(f"d/a = {rates['d'] / rates['a']:.2f}")
        if all(p in rates for p in "bcd"):
            limit = 1 / (1 / rates["b"] + 1 / rates["c"])
            line.append(f"limit = 1/(1/b + 1/c) = {limit:,.0f} images/s, d/limit = {rates['d'] / limit:.2f}")
        if line:
            print(f"{name:>10s}: " + "; ".join(line))


if __name__ == "__main__":
    main()
