"""How generation's work is spread over processes and threads, and how finished batches reach the manifest.

The *worker* layout (`layout`, not a CLI option; not the *file* layout of runtime/writer.py) is picked by
device (measured on a 2-core CPU, see benchmarks/bench_generate.py):
  processes  CPU: one process per core, each with a 1-thread onnxruntime session that makes z, runs
             the generator and encodes + writes its own batch inline. Cores never fight: the
             threads layout on the CPU (ORT on both cores overlapped with 2 encoder threads) made
             160 images/s where this made 265 (cats DCGAN-64, 2,000 PNGs, same run).
  threads    CUDA: the main thread feeds the GPU; a pool of encoder threads (OpenCV and file writes
             release the GIL) writes the uint8 batches.
  inline     one process, no overlap: small jobs, or workers=1.
In every layout at most a few batches per worker are in flight (the Scheduler's window), so memory stays
flat for any N.

Faults (runtime/faults.py): workers stop between files on a stop signal, worker processes die with their
parent however it dies, and a worker that dies stops the run with one line; the Scheduler then lists
every image that was finished.
"""
from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from gancli.runtime.errors import GenerateError
from gancli.runtime.faults import StopSignals, die_with_parent, signal_name
from gancli.runtime.labels import ClassPlan
from gancli.runtime.latents import NO_TRUNCATION, latents
from gancli.runtime.manifest import Manifest
from gancli.runtime.session import GeneratorSession
from gancli.runtime.writer import (FILE_LAYOUTS, LAYOUT_FLAT, NPZ_CHUNK, FileNames, FolderMaker, OnDisk,
                                   write_image_files, write_npz_chunk)

LAYOUTS = ("auto", "processes", "threads", "inline")
# Workers are forked on Linux: a forked worker starts in ~0.05 s, a spawned one re-imports numpy,
# onnxruntime and OpenCV (~0.5 s of CPU each, 10-15 % of a 2,000-image run on 2 cores). Forking is
# safe here because the parent holds no onnxruntime thread pool when it forks (its session has 1
# intra-op thread) and the children build their own sessions. Elsewhere fork is unsafe: spawn.
WORKER_START_METHOD = "fork" if sys.platform == "linux" else "spawn"
IN_FLIGHT_PER_WORKER = 2  # one batch being made, one queued: keeps workers busy, memory flat
STOP_POLL_SECONDS = 0.1  # how often the parent, waiting for a batch, looks whether a stop signal came
# Batch per inference call (= per task for png/jpg). CPU DCGAN: a 1-thread session ran at the same
# 400-430 images/s per core from batch 16 to 256 (CPU time, interleaved), so 64 keeps in-flight
# memory and Ctrl-C latency small. CPU MLP: 256 for files (tasks small enough to balance 2 workers
# on a few thousand images), a whole 1,000-image chunk for npz (its GEMMs gain from size). CUDA:
# chosen, not measured: large batches amortise launches and copies (scripts/gpu_check.py times the result).
AUTO_BATCH = {("cpu", "dcgan"): 64, ("cpu", "mlp"): 256, ("cuda", "dcgan"): 512, ("cuda", "mlp"): 4096}
# Bounds of the size options, checked before any work: 4x the largest auto batch (a larger one only takes
# memory), and more workers than any machine has cores
MAX_BATCH_SIZE = 16_384
MAX_WORKERS = 1_024


@dataclass(frozen=True)
class Task:
    """One unit of work: `indices` to make (an npz chunk: all of it), of which `new` were not on disk
    before (what the manifest gets once they are made)."""

    indices: np.ndarray
    new: np.ndarray


def plan_tasks(on_disk: OnDisk, fmt: str, batch_size: int) -> Iterator[Task]:
    """Tasks in index order, lazily, one block of the range looked up at a time: batches of missing
    images, or whole npz chunks (an incomplete chunk file is remade whole, with the same z for what it held)."""
    if fmt == "npz":
        for lo, have in on_disk.blocks():
            hi = lo + len(have)
            for first in range(lo - lo % NPZ_CHUNK, hi, NPZ_CHUNK):
                a, b = max(first, lo), min(first + NPZ_CHUNK, hi)
                missing = np.flatnonzero(~have[a - lo:b - lo]) + a
                if len(missing):
                    yield Task(np.arange(a, b, dtype=np.int64), missing)
        return
    pending = np.empty(0, dtype=np.int64)
    for lo, have in on_disk.blocks():
        pending = np.concatenate((pending, np.flatnonzero(~have) + lo))
        while len(pending) >= batch_size:
            batch = pending[:batch_size].copy()
            yield Task(batch, batch)
            pending = pending[batch_size:]
    if len(pending):
        yield Task(pending, pending)


@dataclass(frozen=True)
class Job:
    """What every worker needs to make and write any task (picklable for worker processes)."""

    model: Path
    out_dir: Path
    fmt: str
    seed: int
    batch_size: int
    file_layout: str = LAYOUT_FLAT
    classes: ClassPlan | None = None  # conditional models: which label each index gets
    truncation: float = NO_TRUNCATION  # psi: z' = psi * z (runtime/latents.py)


def make_images(session: GeneratorSession, seed: int, indices: np.ndarray, classes: ClassPlan | None,
                truncation: float = NO_TRUNCATION) -> np.ndarray:
    """uint8 images of these indices: z from (seed, i, psi), the label (when conditional) from i and the classes."""
    z = latents(seed, indices, session.metadata.latent_dim, truncation)
    return session.images(z, classes.labels(indices) if classes is not None else None)


class BatchMaker:
    """z (and labels) -> generator -> encoded files for one task's indices."""

    def __init__(self, job: Job, session: GeneratorSession, should_stop: Callable[[], bool]):
        self.job = job
        self.session = session
        self.should_stop = should_stop
        self.folders = FolderMaker(job.out_dir)
        self.names = FileNames(job.fmt, job.file_layout, job.classes)

    def images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [len(indices), H, W, C]; an npz chunk runs in batch_size pieces."""
        step = self.job.batch_size
        parts = [make_images(self.session, self.job.seed, indices[k:k + step], self.job.classes, self.job.truncation)
                 for k in range(0, len(indices), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def write(self, indices: np.ndarray, images: np.ndarray) -> list[int]:
        if self.job.fmt == "npz":
            if self.should_stop():
                return []
            labels = self.job.classes.labels(indices) if self.job.classes is not None else None
            return write_npz_chunk(self.folders, indices, images, labels)
        return write_image_files(self.folders, indices, images, self.job.fmt, self.should_stop, self.names)

    def run(self, indices: np.ndarray) -> list[int]:
        if self.should_stop():
            return []
        return self.write(indices, self.images(indices))


# Worker-process state: set once by the pool initializer, used by every task the process runs.
_process_maker: BatchMaker | None = None


def _init_worker_process(job: Job, stop: threading.Event, parent_pid: int) -> None:
    global _process_maker
    # Ctrl-C goes to the whole process group: the parent alone decides, and tells workers via `stop`
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM kills a worker (a forked one inherited the parent's stop handler): the parent sees a dead
    # worker, or, when the whole group got it, stops itself and lists what the workers finished
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent_pid)
    cv2.setNumThreads(1)
    _process_maker = BatchMaker(job, GeneratorSession(job.model, device="cpu", threads=1), stop.is_set)


def _worker_ready() -> None:
    """A no-op task: submitting one per worker makes the pool spawn them all at once."""


def _run_in_worker_process(indices: np.ndarray) -> list[int]:
    assert _process_maker is not None
    return _process_maker.run(indices)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Worker processes started inside ignore Ctrl-C from birth (forked ones inherit SIG_IGN, and a
    spawned Python keeps an inherited SIG_IGN), so no Ctrl-C can kill one before its initializer runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Fork with every object of this process collected or frozen: a forked worker that ran the garbage
    collector on an object it inherited (an onnxruntime session of an earlier run, say) would destroy it in a
    process without that object's threads, and onnxruntime then waits forever on a condition variable. So
    garbage is collected here, where the threads live, and the rest is frozen out of the children's GC
    (gc.freeze, the documented way to fork servers)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Runner:
    """Submits tasks to one layout; each future resolves to the indices written."""

    def __init__(self, layout: str, workers: int, job: Job, session: GeneratorSession,
                 stopping: Callable[[], bool] = lambda: False):
        self.layout = layout
        self.workers = workers
        # inline work is done at submit: a window would only delay the manifest
        self.max_in_flight = 1 if layout == "inline" else IN_FLIGHT_PER_WORKER * workers
        self._pool: ProcessPoolExecutor | ThreadPoolExecutor | None = None
        self.processes: list = []  # the worker processes (multiprocessing.Process), once started
        if layout == "processes":
            context = get_context(WORKER_START_METHOD)
            self.stop = context.Event()
            self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker_process,
                                             initargs=(job, self.stop, os.getpid()))
            self._start_processes()
        else:
            self.stop = threading.Event()
            if layout == "threads":
                cv2.setNumThreads(1)  # parallel across images, not inside one small image
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="gancli-writer")
        # in this process, a stop signal stops the batch being written between two files (no reference to
        # self in it: a Runner in a reference cycle would keep its onnxruntime session alive until a GC)
        stop = self.stop
        self.maker = BatchMaker(job, session, lambda: stop.is_set() or stopping())

    def _start_processes(self) -> None:
        """Spawn every worker now, so their start-up (imports, session: ~0.5 s) overlaps the parent's
        checks, and inside sigint_ignored (a forking pool starts all at the first submit, a spawning
        one a worker per submit while none is idle)."""
        with sigint_ignored(), frozen_heap():
            for _ in range(self.workers):
                self._pool.submit(_worker_ready)
        self.processes = list(getattr(self._pool, "_processes", {}).values())

    def submit(self, indices: np.ndarray) -> Future:
        if self.layout == "processes":
            return self._pool.submit(_run_in_worker_process, indices)
        if self.layout == "threads":
            images = self.maker.images(indices)  # the main thread keeps the device busy
            return self._pool.submit(self.maker.write, indices, images)
        future: Future = Future()
        future.set_result(self.maker.run(indices))
        return future

    def close(self) -> None:
        """Stop taking work and wait for every worker to end (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def worker_died(self) -> tuple[str, str]:
        """After a BrokenProcessPool and close(): (which worker died and of what, a hint or "")."""
        codes = [(p.pid, p.exitcode) for p in self.processes]
        # the pool sends SIGTERM to the others once one is gone: the first other death is the cause
        pid, code = next(((pid, code) for pid, code in codes if code not in (None, 0, -signal.SIGTERM)),
                         next(((pid, code) for pid, code in codes if code not in (None, 0)), (None, None)))
        who = f"worker process {pid}" if pid is not None else "a worker process"
        if code is None:
            return f"{who} ended unexpectedly", ""
        if code > 0:
            return f"{who} exited with code {code}", ("" if WORKER_START_METHOD == "fork" else
                                                      " (from a script, call generate() under `if __name__ == '__main__':`)")
        if -code == signal.SIGKILL:
            return f"{who} was killed by SIGKILL (out of memory, or killed from outside)", \
                " (with a smaller --batch-size if memory ran out)"
        return f"{who} was killed by {signal_name(-code)}", ""


class Scheduler:
    """Runs tasks with a bounded window in flight and lists each finished batch in the manifest, in the
    order submitted, so the manifest lags the files on disk by at most the batches in flight.

    On a stop signal, an error, a dead worker or an exception from on_progress: workers are told to stop
    between files, the batches already handed out are waited for and listed; a batch whose outcome is
    unknown (it failed halfway, or its worker died) is looked up on disk by `finish`, once the workers are
    gone, so that after any stop the parent survives the manifest lists every complete image.
    """

    def __init__(self, runner: Runner, manifest: Manifest, on_disk: OnDisk, signals: StopSignals,
                 on_progress: Callable[[int, int], None] | None, total: int):
        self.runner = runner
        self.manifest = manifest
        self.on_disk = on_disk
        self.signals = signals
        self.on_progress = on_progress
        self.total = total
        self.made = 0
        self.lost: list[Task] = []  # outcome unknown: looked up on disk by finish()

    def run(self, tasks: Iterator[Task]) -> int:
        window: deque[tuple[Future, Task]] = deque()
        if self.on_progress is not None:
            self.on_progress(0, self.total)
        try:
            for task in tasks:
                if self.signals:
                    break
                try:
                    future = self.runner.submit(task.indices)
                except BaseException:
                    self.lost.append(task)  # an inline task that failed halfway wrote some files
                    raise
                window.append((future, task))
                while len(window) >= self.runner.max_in_flight and not self.signals:
                    self._settle_oldest(window)
            while window and not self.signals:
                self._settle_oldest(window)
        except BrokenProcessPool:
            self._drain(window)
            self.runner.close()
            what, hint = self.runner.worker_died()
            raise GenerateError(f"{what}; the other workers were stopped and every finished image is kept and listed "
                                f"in {self.manifest.path}; run the same command again to make the rest{hint}") from None
        except BaseException:
            self._drain(window)
            raise
        if self.signals:
            self._drain(window)
            raise self.signals.exception(f"every finished image is kept and listed in {self.manifest.path}; "
                                         f"run the same command again to make the rest")
        return self.made

    def _settle_oldest(self, window: deque[tuple[Future, Task]]) -> None:
        future, task = window[0]  # popped only once listed: a stop while waiting must not lose it
        while not future.done():
            wait_futures([future], timeout=STOP_POLL_SECONDS)
            if self.signals:
                return
        written = future.result()  # the worker's error, if it failed
        window.popleft()
        self._list(task, written)
        if self.on_progress is not None:
            self.on_progress(self.made, self.total)

    def _list(self, task: Task, written: list[int]) -> None:
        new = task.new if len(written) == len(task.indices) else np.intersect1d(task.new, written)
        self.manifest.append(new)
        self.made += len(new)

    def _drain(self, window: deque[tuple[Future, Task]]) -> None:
        """Stop the workers between files and list what the batches in flight wrote; the first error is
        the one reported. A second Ctrl-C ends the waiting (finish() still looks on disk)."""
        self.runner.stop.set()
        for future, _ in window:
            future.cancel()  # not started yet: nothing of it is on disk
        while window:
            future, task = window.popleft()
            if future.cancelled():
                continue
            try:
                written = future.result()
            except Exception:  # noqa: BLE001 (it failed halfway, or its worker died: look on disk)
                self.lost.append(task)
                continue
            except BaseException:
                self.lost.append(task)
                self.lost.extend(t for _, t in window)
                window.clear()
                raise
            try:
                self._list(task, written)
            except Exception:  # noqa: BLE001 (the manifest cannot be written: the error already raised says why)
                self.lost.append(task)

    def finish(self) -> None:
        """Once the workers are gone: list the images the lost tasks finished, and delete temp files their
        dead workers left. Never raises: an error being reported is the one that matters."""
        pids = self.runner.worker_pids()
        for task in self.lost:
            with contextlib.suppress(Exception):
                self.on_disk.remove_temps_of(task.indices, pids)
                found = self.on_disk.present(task.new)
                self.manifest.append(found)
                self.made += len(found)
        self.lost.clear()


def auto_batch_size(device: str, arch: str, fmt: str) -> int:
    if (device, arch, fmt) == ("cpu", "mlp", "npz"):
        return NPZ_CHUNK
    return AUTO_BATCH.get((device, arch), 64)


def fit_batch_size(batch_size: int, images: int, fmt: str) -> int:
    """The batch cut to what one task can hold (this run's images; for npz, one chunk of them): a larger one
    changes no image, only the memory it sizes and the manifest space kept for the batches in flight."""
    most = min(images, NPZ_CHUNK) if fmt == "npz" else images
    return max(1, min(batch_size, most))


def default_workers() -> int:
    """One per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def choose_layout(layout: str, device: str, workers: int | None, n_tasks: int) -> tuple[str, int]:
    if layout in FILE_LAYOUTS:
        raise GenerateError(f"layout={layout!r} spreads the work ({', '.join(LAYOUTS)}); the file layout is "
                            f"file_layout={layout!r} (the CLI's --layout)")
    if layout not in LAYOUTS:
        raise GenerateError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    # a worker without a task would only cost its start-up, and its share of the window of batches in flight
    # (and of the manifest space kept for them)
    workers = min(default_workers() if workers is None else workers, max(n_tasks, 1))
    if layout == "auto":
        layout = "threads" if device == "cuda" else "processes"
    if layout == "processes" and workers == 1:
        layout = "inline"
    return layout, workers
