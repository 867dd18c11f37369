"""`gancli serve`'s settings, checked before any model is loaded."""
from __future__ import annotations

from dataclasses import dataclass

from gancli.runtime.errors import GenerateError
from gancli.runtime.session import resolve_device

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"  # loopback: any other address needs an API key
    port: int = 8000  # 0: a free port, printed at start
    device: str = "auto"
    max_batch: int = 64  # images per onnxruntime batch, at most (Triton's max_batch_size)
    max_delay_ms: float = 5.0  # how long the first request waiting may wait for others to join its batch
    max_queue: int = 1024  # images waiting for a batch per model, at most: past it, 503 with Retry-After
    max_images: int = 1024  # n of one POST, at most
    max_body_bytes: int = 64 << 10  # a POST body, at most: the JSON of a request is a few hundred bytes
    api_key: str | None = None  # when set, every /v1 request must carry it
    grace_seconds: float = 25.0  # SIGTERM: how long requests in flight may take to finish (Kubernetes waits 30)

    def check(self) -> None:
        """One GenerateError naming the flag, before anything is loaded or bound."""
        resolve_device(self.device)
        if self.host not in LOOPBACK_HOSTS and not self.api_key:
            raise GenerateError(f"--host {self.host} opens the server beyond this machine; set --api-key KEY (or "
                                f"GANCLI_API_KEY) so that only clients with the key are answered, or keep --host 127.0.0.1")
        for flag, value, least in (("--port", self.port, 0), ("--max-batch", self.max_batch, 1),
                                   ("--max-delay-ms", self.max_delay_ms, 0), ("--max-queue", self.max_queue, 1),
                                   ("--max-images", self.max_images, 1), ("--grace-seconds", self.grace_seconds, 0)):
            if not value >= least:
                raise GenerateError(f"{flag} must be >= {least}, not {value}")
        if self.port > 65535:
            raise GenerateError(f"--port must be at most 65535, not {self.port}")
