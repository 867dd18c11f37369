"""`gancli serve`'s settings, checked before any model is loaded: every one is bounded, so that no value can
make the server wait forever, hold unbounded memory or stop serving."""
from __future__ import annotations

import math
from dataclasses import dataclass

from gancli.runtime.errors import GenerateError
from gancli.runtime.session import resolve_device

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # every interface: what clients call the server cannot be known here


@dataclass(frozen=True)
class Bound:
    """The values a setting may take: a flag outside [least, most] (or not finite) is one error line."""

    flag: str
    least: float
    most: float


BOUNDS = {  # field -> its bounds; `most` keeps memory, waits and shutdowns finite
    "port": Bound("--port", 0, 65535),
    "max_batch": Bound("--max-batch", 1, 4096),
    "max_delay_ms": Bound("--max-delay-ms", 0, 1000),
    "instances": Bound("--instances", 0, 256),
    "max_queue": Bound("--max-queue", 1, 1 << 20),
    "max_images": Bound("--max-images", 1, 1 << 16),
    "request_timeout": Bound("--request-timeout", 0.1, 600),
    "idle_timeout": Bound("--idle-timeout", 0.1, 3600),
    "grace_seconds": Bound("--grace-seconds", 0, 3600),
}


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"  # loopback: any other address needs an API key
    port: int = 8000  # 0: a free port, printed at start
    device: str = "auto"
    instances: int = 0  # onnxruntime sessions per model, each run by a batching worker; 0: one per core on the CPU, 1 on a GPU
    max_batch: int = 64  # images per onnxruntime batch, at most (Triton's max_batch_size)
    # how long a batch may wait for requests that have arrived but are not queued yet; 0 (Triton's default):
    # the worker runs what is queued the moment it is free, and requests queue while a batch runs
    max_delay_ms: float = 0.0
    max_queue: int = 1024  # images waiting for a batch per model, at most: past it, 503 with Retry-After
    max_images: int = 1024  # n of one POST, at most
    max_body_bytes: int = 64 << 10  # a POST body, at most: the JSON of a request is a few hundred bytes
    max_head_bytes: int = 16 << 10  # request line and headers, at most (h11's default): past it, 431 (414 for the URL)
    request_timeout: float = 10.0  # a request (line, headers, body) must arrive within this of its first byte
    idle_timeout: float = 5.0  # a keep-alive connection with no request is closed after this (uvicorn's default)
    allowed_hosts: str = ""  # Host names answered beyond loopback names and the bound host, comma-separated
    api_key: str | None = None  # when set, every /v1 request must carry it
    grace_seconds: float = 25.0  # SIGTERM: how long requests in flight may take to finish (Kubernetes waits 30)

    def check(self) -> None:
        """One GenerateError naming the flag, before anything is loaded or bound."""
        resolve_device(self.device)
        if self.host not in LOOPBACK_HOSTS and not self.api_key:
            raise GenerateError(f"--host {self.host} opens the server beyond this machine; set --api-key KEY (or "
                                f"GANCLI_API_KEY) so that only clients with the key are answered, or keep --host 127.0.0.1")
        for field, bound in BOUNDS.items():
            value = getattr(self, field)
            if not (math.isfinite(value) and bound.least <= value <= bound.most):
                raise GenerateError(f"{bound.flag} must be between {bound.least:g} and {bound.most:g}, not {value}")
        for name in self.extra_hosts:
            if any(c in name for c in "/ @"):
                raise GenerateError(f"--allowed-hosts {name!r} is not a host name; give names such as "
                                    f"example.com or 10.0.0.5 (or * for any)")

    @property
    def extra_hosts(self) -> list[str]:
        """--allowed-hosts as names: "a.example, b.example" -> ["a.example", "b.example"]."""
        return [name.strip() for name in self.allowed_hosts.split(",") if name.strip()]

    def answered_hosts(self) -> frozenset[str] | None:
        """The Host names (without port) the server answers; None: any (a wildcard bind without
        --allowed-hosts, where the API key guards the server, or --allowed-hosts '*'). Refusing other names
        keeps a keyless loopback server from being reached through DNS rebinding."""
        if "*" in self.extra_hosts or (self.host in WILDCARD_HOSTS and not self.extra_hosts):
            return None
        names = {*LOOPBACK_HOSTS, self.host, *self.extra_hosts} - set(WILDCARD_HOSTS)
        return frozenset(name.lower() for name in names)
