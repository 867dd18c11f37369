"""What every request goes through, as plain ASGI middleware (streamed answers pass through untouched):
the request metrics, outermost, so that refusals are counted too; then the Host check; then the API key on
/v1; then the body size limit."""
from __future__ import annotations

import hmac
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gancli.runtime.serve.metrics import Metrics

PROTECTED_PREFIX = "/v1/"  # the API; health, metrics, docs and the gallery page stay open


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class RequestMetrics:
    """Counts each answer by route template (not raw path: a label per index would never end) and status,
    and times it until its last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.answered(route, scope["method"], status, time.perf_counter() - started)


def host_name(host_header: str) -> str:
    """A Host header's name, without its port: "[::1]:8000" -> "::1", "Example.com:80" -> "example.com"."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class AllowedHosts:
    """Answers only requests whose Host names this server (`ServeSettings.answered_hosts`): a web page whose
    name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its own name, and is refused. starlette's
    TrustedHostMiddleware does the same with a plain-text body; this one answers like every other error."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None):
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = Headers(scope=scope).get("host") if scope["type"] == "http" else None
        if self.hosts is None or host is None or host_name(host) in self.hosts:
            await self.app(scope, receive, send)
            return
        response = error_response(400, f"Host {host!r} is not a name of this server; it answers "
                                       f"{', '.join(sorted(self.hosts))} (start it with --allowed-hosts to add names)")
        await response(scope, receive, send)


class ApiKey:
    """With a key set, every /v1 request must carry it: `Authorization: Bearer KEY` or `X-API-Key: KEY`."""

    def __init__(self, app: ASGIApp, key: str | None):
        self.app = app
        self.key = key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        bearer = headers.get("authorization", "")
        given = headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
        if hmac.compare_digest(given.encode(), self.key):  # constant time: no guessing it byte by byte
            await self.app(scope, receive, send)
            return
        response = error_response(401, "this server needs an API key: send `Authorization: Bearer KEY` "
                                        "or `X-API-Key: KEY`", {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class BodyLimit:
    """A request body over `limit` bytes is a 413, whether its Content-Length says so (answered before it is
    read) or it turns out so while read (raised from `receive`, so the app's error handler answers it)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    def too_large(self) -> HTTPException:
        return HTTPException(413, f"the request body is over this server's limit of {self.limit:,} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await error_response(413, self.too_large().detail)(scope, receive, send)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise self.too_large()
            return message

        await self.app(scope, receive_limited, send)
