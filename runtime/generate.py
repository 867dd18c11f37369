"""Bulk generation: N images from an exported generator, reproducible, resumable, shardable, fast.

Image i is made from latents(seed, i) alone (and, for a class-conditional model, the label
runtime/labels.py gives i), named by i, and written atomically; a rerun makes only what is missing,
and `shard=(k, m)` makes the k-th of m disjoint parts of the same set.

This module checks the arguments, resolves the model (runtime/models.py), takes the output folder and
its manifest, and hands the tasks to runtime/workers.py, which spreads them over processes or threads.
Two kinds of layout, not to be confused: the *file* layout (`file_layout`, the CLI's --layout: flat
or imagefolder; runtime/writer.py) says where files go; the *worker* layout (`layout`, not a CLI
option; runtime/workers.py) says how the work is spread over processes and threads.

What is on disk is looked up a block at a time (runtime/writer.py's OnDisk) and the manifest is rebuilt
and appended a block at a time too (runtime/manifest.py), so nothing is sized by N.

Faults (README, "Faults: what is guaranteed"; runtime/faults.py): SIGTERM and Ctrl-C stop cleanly (workers
stop between files, every finished image is listed, one line); worker processes die with their parent
however it dies; a worker that dies stops the run with one line; one run at a time writes a manifest.
"""
from __future__ import annotations

import os
import time
from numbers import Real
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gancli.runtime.errors import GenerateError, NotARegularFile
from gancli.runtime.faults import FolderLock, StopSignals
from gancli.runtime.files import regular_target, sha256_file
from gancli.runtime.labels import ClassesArg, describe_classes, resolve_classes
from gancli.runtime.latents import MAX_SEED, NO_TRUNCATION, is_truncation
from gancli.runtime.manifest import (HEADER_VERSION, Manifest, check_header, read_header, shard_header_name,
                                     write_header)
from gancli.runtime.metadata import ModelMetadata
from gancli.runtime.models import check_precision, cpu_default_session, resolve_model
from gancli.runtime.session import GeneratorSession, resolve_device
from gancli.runtime.workers import (MAX_BATCH_SIZE, MAX_WORKERS, Job, Runner, Scheduler, auto_batch_size, choose_layout,
                                    fit_batch_size, make_images, plan_tasks)
from gancli.runtime.writer import (FORMATS, HEADER_NAME, INDEX_DIGITS, LAYOUT_FLAT, MAX_IMAGES, NPZ_CHUNK, FileNames,
                                   IndexSet, OnDisk, check_file_layout, write_grid)

GRID_IMAGES = 64
MANIFEST_RESERVE_MIN = 64 << 10  # bytes kept allocated beyond the manifest's end, at least


@dataclass(frozen=True)
class GenerateResult:
    out_dir: Path
    model: Path
    device: str
    layout: str
    workers: int
    batch_size: int
    start: int  # this run's index range [start, stop)
    stop: int
    made: int
    already: int  # images of the range found on disk and kept
    seconds: float
    file_layout: str = LAYOUT_FLAT
    classes: tuple[str, ...] = ()  # conditional models: the class names images cycle through; () otherwise
    generating_seconds: float = 0.0  # of `seconds`, those spent making images (not loading the model, checking)
    precision: str = "fp32"  # of the graph `model` (an int8 one is the CPU's default where it measures alike)

    @property
    def images_per_second(self) -> float:
        """Images made per second of making them, as the progress bar counts."""
        return self.made / self.generating_seconds if self.generating_seconds > 0 else 0.0



def parse_shard(text: str) -> tuple[int, int]:
    """'K/M' -> (K, M), K counted from 0: '0/2' and '1/2' are the two halves."""
    try:
        k, m = (int(part) for part in text.split("/"))
    except ValueError:
        raise GenerateError(f"--shard {text!r} is not K/M; write e.g. 0/2 and 1/2 for two halves") from None
    if m < 1 or not 0 <= k < m:
        raise GenerateError(f"--shard {text!r}: need 0 <= K < M (K counts from 0), e.g. 0/{max(m, 2)}")
    return k, m


def shard_range(n: int, shard: tuple[int, int], fmt: str) -> tuple[int, int]:
    """Indices [start, stop) of shard k of m; npz shards split on chunk boundaries so no file is shared."""
    k, m = shard
    unit = NPZ_CHUNK if fmt == "npz" else 1
    units = -(-n // unit)
    return min(n, k * units // m * unit), min(n, (k + 1) * units // m * unit)


def describe_selection(classes: list[str] | None) -> str:
    return "no classes (an unconditional model)" if classes is None else f"classes {describe_classes(classes)}"


def make_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise GenerateError(f"--out {out_dir} is a file, not a folder; choose a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenerateError(f"cannot create --out folder {out_dir} ({e.strerror}); choose a writable place") from e
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise GenerateError(f"--out folder {out_dir} is not writable; choose a writable place")



def check_count(n: int) -> None:
    """-n: positive, and within what the file names can hold."""
    if n <= 0:
        raise GenerateError(f"-n must be a positive number of images, not {n}")
    if n > MAX_IMAGES:
        raise GenerateError(f"-n {n:,} is more images than one folder can name (at most {MAX_IMAGES:,}: indices "
                            f"have {INDEX_DIGITS} digits); make several sets of at most {MAX_IMAGES:,} with different "
                            f"--seed, each in its own --out folder")


def check_truncation(truncation: float) -> None:
    """psi of z' = psi * z: in (0, 1], 1 being no truncation."""
    if isinstance(truncation, bool) or not isinstance(truncation, Real) or not is_truncation(truncation):
        raise GenerateError(f"--truncation must be a number in (0, 1] (1: off; smaller: more typical, less varied "
                            f"images), not {truncation!r}")


def check_grid(grid: str | Path | None, n: int, shard: tuple[int, int], fmt: str) -> None:
    """--grid names a PNG file to write: not a folder, in a folder that exists, not a device, FIFO or socket
    (regular_target), and of a shard that holds images to show."""
    if grid is None:
        return
    grid = Path(grid)
    if grid.is_dir() or str(grid).endswith(os.sep) or not str(grid):
        raise GenerateError(f"--grid {grid} is a folder; pass a file name such as {grid / 'grid.png'}")
    if not grid.parent.is_dir():
        raise GenerateError(f"--grid {grid}: its folder {grid.parent} does not exist; create it or pass another file")
    regular_target(grid, "--grid")
    start, stop = shard_range(n, shard, fmt)
    if start == stop:
        k, m = shard
        raise GenerateError(f"--grid {grid}: shard {k}/{m} of {n:,} images holds none to show; drop --grid for this "
                            f"shard, or pass it to one that holds images")


def check_sizes(batch_size: int | None, workers: int | None) -> None:
    """The size options, bounded: a batch of a billion images was accepted, and sized the manifest's space
    reservation to the whole free disk (a batch above -n is cut to -n later, silently: fit_batch_size)."""
    if batch_size is not None and batch_size < 1:
        raise GenerateError(f"--batch-size must be >= 1 (or auto), not {batch_size}")
    if batch_size is not None and batch_size > MAX_BATCH_SIZE:
        raise GenerateError(f"--batch-size {batch_size:,} is more than one inference call can usefully hold; pass at "
                            f"most {MAX_BATCH_SIZE:,}, or auto")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise GenerateError(f"workers={workers:,} is out of range; pass 1 to {MAX_WORKERS:,} (default: one per core; "
                            f"no more are started than there are batches)")


def check_arguments(n: int, fmt: str, batch_size: int | None, seed: int, shard: str | tuple[int, int],
                    file_layout: str = LAYOUT_FLAT, truncation: float = NO_TRUNCATION,
                    grid: str | Path | None = None, out_dir: str | Path | None = None,
                    workers: int | None = None) -> tuple[int, int]:
    """Fail fast, before any model is loaded or anything is written; returns the shard as (k, m)."""
    check_count(n)
    if out_dir is not None and not str(out_dir).strip():  # Path("") would be the current folder
        raise GenerateError("--out is empty; pass the folder to write the images to")
    check_truncation(truncation)
    if fmt not in FORMATS:
        raise GenerateError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    check_file_layout(file_layout, fmt)
    check_sizes(batch_size, workers)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise GenerateError(f"--seed must be between 0 and 2**128 - 1, not {seed}")
    k, m = parse_shard(shard) if isinstance(shard, str) else shard
    if not 0 <= k < m:
        raise GenerateError(f"shard {k}/{m}: need 0 <= K < M")
    check_grid(grid, n, (k, m), fmt)
    return k, m


def generate(n: int, out_dir: str | Path, model: str | Path | None = None, *, batch_size: int | None = None,
             device: str = "auto", seed: int = 0, fmt: str = "png", shard: str | tuple[int, int] = (0, 1),
             grid: str | Path | None = None, workers: int | None = None, layout: str = "auto",
             precision: str | None = None, classes: ClassesArg = None, file_layout: str = LAYOUT_FLAT,
             truncation: float = NO_TRUNCATION, on_progress: Callable[[int, int], None] | None = None,
             ) -> GenerateResult:
    """Make images [0, n) (or this shard's part) in `out_dir`, skipping those already there.

    classes: for a class-conditional model, the classes images cycle through (names or indices, "3,7"
    or a list; default every class); image i gets the i-th of them, modulo their number. file_layout:
    "flat" (OUT/00000/000000042.png) or "imagefolder" (OUT/<class name>/000000042.png, conditional
    models only). truncation: psi in (0, 1] (1: off), z' = psi * z (runtime/latents.py). layout and
    workers spread the work (see runtime/workers.py).
    on_progress(made, total) is called after each batch; it may raise KeyboardInterrupt to stop.

    Called in the main thread, it handles SIGTERM and Ctrl-C while it runs (where their handlers are the
    default ones; they are put back when it returns): workers stop between files, every finished image
    is listed in the manifest, then GenerateStopped (SIGTERM) or KeyboardInterrupt (Ctrl-C) is raised.
    """
    started = time.perf_counter()
    shard = check_arguments(n, fmt, batch_size, seed, shard, file_layout, truncation, grid, out_dir, workers)
    device = resolve_device(device)
    model_path = resolve_model(model, precision)
    with StopSignals() as signals:
        # one intra-op thread: no thread pool exists when worker processes fork from this one
        session = GeneratorSession(model_path, device=device, threads=1)
        check_precision(session.metadata, precision, model_path)
        if not begun_with(model_path, Path(out_dir), shard):
            model_path, session = cpu_default_session(model, model_path, session, precision, threads=1)
        meta = session.metadata
        plan = resolve_classes(meta, classes, model_path)
        if file_layout != LAYOUT_FLAT and plan is None:
            raise GenerateError(f"--layout {file_layout} makes one folder per class, but {model_path} is an unconditional "
                                f"model (no classes); drop --layout, or use a class-conditional model")
        names = FileNames(fmt, file_layout, plan)
        out_dir = Path(out_dir)
        created = not out_dir.exists()
        make_out_dir(out_dir)
        start, stop = shard_range(n, shard, fmt)
        batch_size = fit_batch_size(batch_size or auto_batch_size(session.device, meta.arch, fmt), stop - start, fmt)
        most_tasks = -(-(stop - start) // (NPZ_CHUNK if fmt == "npz" else batch_size))
        layout, workers = choose_layout(layout, session.device, workers, most_tasks)
        if layout == "threads" and session.device == "cpu":
            session = GeneratorSession(model_path, device="cpu", threads=0)  # the main thread infers on every core
        k, m = shard
        manifest = Manifest(out_dir / ("manifest.jsonl" if m == 1 else f"manifest-{k}-of-{m}.jsonl"),
                            seed, fmt, start, stop, names)
        signals.check()
        job = Job(model_path, out_dir, fmt, seed, batch_size, file_layout, plan, truncation)
        with FolderLock(manifest.path) as lock:
            header = generate_header(job, meta)
            records = [HEADER_NAME] + ([shard_header_name(k, m)] if m > 1 else [])
            try:  # checks that read only: a refused run leaves the folder as it was
                known = all([check_header(out_dir, header, describe_selection, name) for name in records])
                listed = manifest.listed()  # a foreign manifest is refused here, before anything is written
                listed = listed if known else IndexSet()
            except (GenerateError, NotARegularFile):
                lock.remove_unused(out_dir if created else None)
                raise
            runner = Runner(layout, workers, job, session, stopping=signals.__bool__)
            scheduler = None
            try:
                for name in records:
                    write_header(out_dir, header, name)
                on_disk = OnDisk(out_dir, names, start, stop, listed)
                signals.check()
                already = manifest.rebuild(on_disk, signals.check, keep_outside=known)
                task_images = NPZ_CHUNK if fmt == "npz" else batch_size
                manifest.open(reserve=max(MANIFEST_RESERVE_MIN,
                                          2 * runner.max_in_flight * task_images * manifest.line_bytes()))
                scheduler = Scheduler(runner, manifest, on_disk, signals, on_progress, (stop - start) - already)
                work_started = time.perf_counter()
                made = scheduler.run(plan_tasks(on_disk, fmt, batch_size))
                generating = time.perf_counter() - work_started
            finally:
                runner.close()
                if scheduler is not None:
                    scheduler.finish()
                manifest.close()
    if grid is not None:
        first = np.arange(start, min(stop, start + GRID_IMAGES))
        write_grid(Path(grid), make_images(session, seed, first, plan, truncation))
    return GenerateResult(out_dir, model_path, session.device, layout, workers, batch_size, start, stop,
                          made, already, time.perf_counter() - started, file_layout,
                          tuple(plan.requested_names) if plan is not None else (), generating, meta.precision)


def begun_with(path: Path, out_dir: Path, shard: tuple[int, int]) -> bool:
    """Whether `out_dir`'s record (or this shard's) says its images were made with the graph `path`: a folder
    begun with the fp32 graph is finished with it, where int8 would otherwise be the CPU's default."""
    records = [HEADER_NAME] + ([shard_header_name(*shard)] if shard[1] > 1 else [])
    made_with = {header.get("model_sha256") for header in (read_header(out_dir, name) for name in records)
                 if header is not None} if out_dir.is_dir() else set()
    return bool(made_with) and sha256_file(path) in made_with


def generate_header(job: Job, meta: ModelMetadata) -> dict:
    """generate.json: what every image in the folder was made with; a rerun with other settings is refused."""
    note = "image i is made from latents(seed, i, truncation_psi) of runtime/latents.py"
    plan = job.classes
    if plan is not None:
        note += " and label labels[i % len(labels)] (runtime/labels.py)"
    return {
        "header_version": HEADER_VERSION,
        "model": str(job.model), "model_sha256": sha256_file(job.model), "seed": job.seed, "format": job.fmt,
        "layout": job.file_layout, "classes": plan.requested_names if plan is not None else None,
        "labels": list(plan.requested) if plan is not None else None, "truncation_psi": job.truncation,
        "image_shape": list(meta.image_shape), "output_kind": meta.output_kind,
        "note": note + "; the manifest lists the files",
    }


def generate_array(model: str | Path, n: int, seed: int = 0, device: str = "auto",
                   batch_size: int = 500, precision: str | None = None, classes: ClassesArg = None,
                   return_labels: bool = False, truncation: float = NO_TRUNCATION,
                   ) -> tuple[np.ndarray, ModelMetadata] | tuple[np.ndarray, np.ndarray | None, ModelMetadata]:
    """Images [0, n) of `seed` in memory, uint8 [N, H, W, C]: the same images `generate` writes as files
    (with the same `classes` and `truncation`). Returns (images, meta), or with return_labels (images, labels, meta):
    labels int64 [N], indices into meta.class_names, None for an unconditional model."""
    path = resolve_model(model, precision)
    session = GeneratorSession(path, device=device)
    check_precision(session.metadata, precision, path)
    path, session = cpu_default_session(model, path, session, precision, threads=0)
    meta = session.metadata
    plan = resolve_classes(meta, classes, path)
    try:
        images = np.empty((n, meta.img_size, meta.img_size, meta.channels), dtype=np.uint8)
    except MemoryError:
        need = n * meta.img_size * meta.img_size * meta.channels / 2 ** 30
        raise GenerateError(f"{n:,} images of {meta.img_size}x{meta.img_size}x{meta.channels} need {need:,.1f} GiB in "
                            f"memory; ask for fewer, or write them to files with gancli.generate") from None
    for start in range(0, n, batch_size):
        indices = np.arange(start, min(start + batch_size, n))
        images[indices] = make_images(session, seed, indices, plan, truncation)
    if not return_labels:
        return images, meta
    return images, (plan.labels(np.arange(n)) if plan is not None else None), meta
