"""`gancli serve` as a plain function: check the settings, load the models, bind, then run uvicorn until a
SIGTERM or Ctrl-C, which stops accepting, lets the requests in flight finish within the grace period, and
returns (exit code 0, which Kubernetes takes as a clean stop)."""
from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn

from gancli.runtime.errors import GenerateError
from gancli.runtime.serve.app import create_app
from gancli.runtime.serve.protocol import bounded_protocol
from gancli.runtime.serve.registry import ServedModel, load_models
from gancli.runtime.serve.settings import ServeSettings

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, except that the stop signal is not raised again once the drain is done: uvicorn does
    that so the process dies of it (exit 143), where a drained server should exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self.handle_exit) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a taken port is one clear error (and port 0 a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without it, Nagle's algorithm held each answer's body back until the
    # client's delayed ACK of its headers, 40 ms per request on a keep-alive connection (measured)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise GenerateError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host") from e
    sock.listen(2048)  # connections from now on wait in the backlog until uvicorn accepts them
    return sock


def describe(models: dict[str, ServedModel], settings: ServeSettings, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    devices = sorted({model.session.device for model in models.values()})
    instances = sorted({len(model.sessions) for model in models.values()})
    return (f"serving {', '.join(models)} on http://{f'[{host}]' if ':' in host else host}:{port} "
            f"({'/'.join(devices)}, {'/'.join(map(str, instances))} instance{'s' if instances[-1] > 1 else ''} a model; "
            f"batches of up to {settings.max_batch} images"
            f"{f', waiting up to {settings.max_delay_ms:g} ms for requests on their way' if settings.max_delay_ms else ''}): "
            f"the gallery at /, the API at /docs")


def serve(models: list[str] | None, settings: ServeSettings, on_ready: Callable[[str], None] = print) -> None:
    """Serve `models` (names, folders or .onnx files, optionally NAME=MODEL; default every shipped one) until
    stopped; `on_ready(line)` is told where, once the socket listens. Bad settings, a model that cannot be
    loaded or a taken port raise one GenerateError before anything is served."""
    settings.check()
    served = load_models(models, settings.device, settings.instances)
    sock = bind(settings.host, settings.port)
    config = uvicorn.Config(create_app(served, settings), log_level="warning", access_log=False, lifespan="on",
                            http=bounded_protocol(settings), timeout_keep_alive=settings.idle_timeout,
                            timeout_graceful_shutdown=settings.grace_seconds, server_header=False)
    server = DrainingServer(config)
    # a stop signal from the moment the address is announced (a supervisor may send one at once) drains the
    # server, which then stops at its start-up, rather than killing the process with the signal
    with server.capture_signals():
        on_ready(describe(served, settings, sock))
        server.run(sockets=[sock])
