"""The server's Prometheus metrics (GET /metrics), in a registry of its own: requests by route and status, a
latency histogram, images made, batch sizes, batch times and the queue depth of each model."""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def batch_buckets(max_batch: int) -> tuple[float, ...]:
    """1, 2, 4, ... up to max_batch: each batch size lands in a bucket that tells it apart from 1."""
    buckets, size = [], 1
    while size < max_batch:
        buckets.append(float(size))
        size *= 2
    return (*buckets, float(max_batch))


class Metrics:
    def __init__(self, max_batch: int):
        self.registry = CollectorRegistry()
        self.requests = Counter("gancli_requests", "HTTP requests answered, by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("gancli_request_seconds", "Time from a request's arrival to its answer's last byte.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("gancli_images", "Images generated, by model.", ["model"], registry=self.registry)
        self.batch_size = Histogram("gancli_batch_size", "Images per onnxruntime batch, by model.", ["model"],
                                    buckets=batch_buckets(max_batch), registry=self.registry)
        self.batch_seconds = Histogram("gancli_batch_seconds", "Time onnxruntime took per batch, by model.", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self._answers: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}  # children of both, by kind
        self.queue_depth = Gauge("gancli_queue_depth", "Images waiting for a batch, by model.", ["model"],
                                 registry=self.registry)

    def watch_model(self, model: str, waiting: Callable[[], int]) -> Callable[[int, float], None]:
        """Report `waiting()` as the model's queue depth; returns the callback its batcher calls per batch."""
        self.queue_depth.labels(model).set_function(waiting)
        images, sizes, seconds = self.images.labels(model), self.batch_size.labels(model), self.batch_seconds.labels(model)

        def on_batch(count: int, took: float) -> None:
            images.inc(count)
            sizes.observe(count)
            seconds.observe(took)
        return on_batch

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        if key not in self._answers:  # labels() takes a lock and builds its key on every call: once per kind
            self._answers[key] = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
        count, latency = self._answers[key]
        count.inc()
        latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
