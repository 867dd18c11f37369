"""Dynamic batching, as Triton's dynamic batcher does it: a worker runs whatever is queued the moment it is
free (up to `max_batch` images), so requests that arrive while a batch runs form the next one. A lone
request never waits: with `max_delay` > 0 a batch also waits, up to that long, for requests that have
reached the route but are not queued yet (`arrival`), and only for those.

Requests come from the event loop (`await batcher.images(...)`). Each of the model's instances (Triton's
instance group: an onnxruntime session, run from one thread only) has a worker thread; the workers share
the queue, so on a CPU of several cores several batches run at once. A worker makes each request's z with
runtime/latents.py, runs the batch and hands each request its rows back on its loop. Rows do not
depend on what they are batched with (checked for the shipped graphs on the CPU), so batching never
changes pixels. The images waiting for a batch are bounded: past `max_queue`, `images` raises QueueFull
at once (the app answers 503 with Retry-After) rather than letting memory and latency grow. A worker that
died raises WorkerDown for every request (503 at once) and fails /healthz, rather than leaving requests
waiting for it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from gancli.runtime.latents import latents
from gancli.runtime.session import GeneratorSession

RETRY_SECONDS = 0.005  # how often a stream waits for room in a full queue
ARRIVAL_POLL_SECONDS = 0.001  # how often a waiting batch looks again whether requests are still on their way
log = logging.getLogger("gancli.serve")


class QueueFull(Exception):
    """More images are waiting for a batch than the queue holds: try again shortly."""


class WorkerDown(Exception):
    """The model's batching worker has stopped: nothing queued would ever be answered."""


@dataclass(frozen=True)
class Pending:
    """One request's share of a batch: its images' (seed, index, label, psi), and where the rows go."""

    seed: int
    indices: np.ndarray
    labels: np.ndarray | None
    truncation: float
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future, result: np.ndarray | BaseException) -> None:
    """On the request's loop: a client that went away has cancelled its future; nothing to hand it."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Batcher:
    """The batching workers of one model, one per session; `on_batch(images, seconds)` is told of each batch."""

    def __init__(self, name: str, sessions: Sequence[GeneratorSession], max_batch: int, max_delay_s: float,
                 max_queue: int, on_batch: Callable[[int, float], None] = lambda images, seconds: None):
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._waiting = 0  # images submitted and not yet in a running batch
        self._arriving = 0  # requests that reached the route and are not queued yet
        self._down = False  # set by the worker before it fails what is queued, when it stops for an error
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(session,), name=f"gancli-batcher-{name}-{k}",
                                          daemon=True) for k, session in enumerate(sessions)]

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads) and not self._down

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Run what is queued, then stop the workers (each stops at the first stop sentinel it takes)."""
        running = [thread for thread in self._threads if thread.is_alive()]
        for _ in running:
            self._queue.put(None)
        for thread in running:
            thread.join()

    @contextlib.contextmanager
    def arrival(self) -> Iterator[Callable[[], None]]:
        """Around a request from the moment it reaches its route: a batch with a delay waits for it. The
        callable it gives says the request is queued (or will never be), after which nothing waits for it."""
        with self._lock:
            self._arriving += 1
        arrived = False

        def queued() -> None:
            nonlocal arrived
            if not arrived:
                arrived = True
                with self._lock:
                    self._arriving -= 1
        try:
            yield queued
        finally:
            queued()

    async def images(self, seed: int, indices: np.ndarray, labels: np.ndarray | None, truncation: float,
                     wait_for_room: bool = False, queued: Callable[[], None] = lambda: None) -> np.ndarray:
        """uint8 [len(indices), H, W, C] (at most max_batch images). A full queue raises QueueFull, or with
        wait_for_room (a stream already answering) waits until there is room; a stopped worker, WorkerDown."""
        while not self._reserve(len(indices)):
            if not wait_for_room:
                queued()
                raise QueueFull
            await asyncio.sleep(RETRY_SECONDS)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(Pending(seed, indices, labels, truncation, future, loop))
        queued()
        if self._down:  # it stopped after the check in _reserve, perhaps after failing what was queued
            self._fail_queued(WorkerDown())
        return await future

    def _reserve(self, count: int) -> bool:
        if self._down:
            raise WorkerDown
        with self._lock:
            # an empty queue takes any request, so one larger than max_queue is not refused forever
            if self._waiting and self._waiting + count > self.max_queue:
                return False
            self._waiting += count
            return True

    def _work(self, session: GeneratorSession) -> None:
        in_hand: list[Pending] = []  # taken from the queue by this worker and not answered yet
        try:
            self._serve_batches(session, in_hand)
        except BaseException as e:  # noqa: BLE001 (a bug here must not leave requests waiting forever)
            log.exception("a batching worker stopped; requests are refused from now on")
            self._down = True
            error = WorkerDown(str(e))
            for item in in_hand:
                item.loop.call_soon_threadsafe(_resolve, item.future, error)
            self._fail_queued(error)

    def _fail_queued(self, error: BaseException) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.loop.call_soon_threadsafe(_resolve, item.future, error)

    def _take(self, in_hand: list[Pending], block: bool, timeout: float | None = None) -> Pending | None:
        """The next queued request (None: the stop sentinel), held `in_hand` until its batch has run;
        queue.Empty when there is none in time."""
        item = self._queue.get(block, timeout)
        if item is not None:
            in_hand.append(item)
        return item

    def _serve_batches(self, session: GeneratorSession, in_hand: list[Pending]) -> None:
        carried: Pending | None = None  # a request that did not fit the last batch: first in the next
        while True:
            first = carried if carried is not None else self._take(in_hand, block=True)
            if first is None:
                return
            batch, carried, stop = self._collect(first, in_hand)
            self._run(session, batch)
            in_hand[:] = [] if carried is None else [carried]
            if stop:
                if carried is not None:
                    self._run(session, [carried])
                return

    def _collect(self, first: Pending, in_hand: list[Pending]) -> tuple[list[Pending], Pending | None, bool]:
        """The batch that starts with `first`: whatever is queued, up to max_batch images, and within
        max_delay what is still arriving. Returns (batch, a request that did not fit, whether the stop
        sentinel came)."""
        batch, count = [first], len(first.indices)
        deadline = time.monotonic() + self.max_delay_s
        while count < self.max_batch:
            try:
                item = self._take(in_hand, block=False)
            except queue.Empty:
                left = deadline - time.monotonic()
                if self._arriving == 0 or left <= 0:
                    break  # nothing more can join in time: a lone request is never held
                try:
                    item = self._take(in_hand, block=True, timeout=min(left, ARRIVAL_POLL_SECONDS))
                except queue.Empty:
                    continue
            if item is None:
                return batch, None, True
            if count + len(item.indices) > self.max_batch:
                return batch, item, False
            batch.append(item)
            count += len(item.indices)
        return batch, None, False

    def _run(self, session: GeneratorSession, batch: list[Pending]) -> None:
        with self._lock:
            self._waiting -= sum(len(p.indices) for p in batch)
        live = [p for p in batch if not p.future.done()]  # a cancelled request (client gone) costs nothing
        if not live:
            return
        started = time.perf_counter()
        try:
            dim = session.metadata.latent_dim
            z = np.concatenate([latents(p.seed, p.indices, dim, p.truncation) for p in live])
            labels = None if live[0].labels is None else np.concatenate([p.labels for p in live])
            images = session.images(z, labels)
        except Exception as e:  # noqa: BLE001 (each request gets the error; the worker keeps serving)
            for p in live:
                p.loop.call_soon_threadsafe(_resolve, p.future, e)
            return
        self.on_batch(len(z), time.perf_counter() - started)
        offset = 0
        for p in live:
            rows = images[offset:offset + len(p.indices)]
            offset += len(p.indices)
            p.loop.call_soon_threadsafe(_resolve, p.future, rows)
