"""uvicorn's HTTP/1.1 protocol (httptools) with the two limits it lacks: a request's line and headers are
bounded in bytes, and a request must arrive whole within a time limit. h11 bounds the head (16 KB by
default) but parses in Python, and neither parser times a slow client out (uvicorn's keep-alive timeout
only runs between requests): without these, one client could make the server hold a 300 MB header, or a
connection forever. Refusals, like uvicorn's own 400 for a request it cannot parse, get the JSON body every
other error of the server has.
"""
from __future__ import annotations

import asyncio
import json
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gancli.runtime.serve.settings import ServeSettings


def bounded_protocol(settings: ServeSettings) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn builds one of per connection, with `settings`' limits."""

    class Bounded(BoundedHttpToolsProtocol):
        max_head_bytes = settings.max_head_bytes
        request_timeout = settings.request_timeout

    return Bounded


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools then stops parsing this connection."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes: int
    request_timeout: float

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._awaiting_head = True  # until the current request's headers are parsed
        self._head_bytes = 0  # bytes received while awaiting them (a bound on the head's size)
        self._request_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[HTTPStatus, str] | None = None  # why the parser was stopped, when it was on purpose
        self._arm_request_timer()  # a connection that sends nothing is also cut off

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_request_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
            self._arm_request_timer()
        super().data_received(data)
        # httptools keeps a header's partial value in its own buffer until the header ends, so the bound is
        # also on the bytes received while the head is incomplete: the parser never holds one read past it
        if self._awaiting_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse(*self._too_large(in_url=len(getattr(self, "url", b"")) * 2 >= self._head_bytes))

    def on_headers_complete(self) -> None:
        self._awaiting_head, self._head_bytes = False, 0
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.max_head_bytes:
            self._refusal = self._too_large(in_url=len(self.url) > self.max_head_bytes // 2)
            raise HeadTooLarge  # stops the parser: uvicorn answers through send_400_response, below
        super().on_headers_complete()

    def _too_large(self, in_url: bool) -> tuple[HTTPStatus, str]:
        if in_url:
            return HTTPStatus.REQUEST_URI_TOO_LONG, f"the request URL is over this server's limit of {self.max_head_bytes:,} bytes"
        return (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"the request's line and headers are over this server's limit of {self.max_head_bytes:,} bytes")

    def on_message_complete(self) -> None:
        self._disarm_request_timer()  # the request arrived whole; the answer is the app's to time
        self._awaiting_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(*self._refusal)
            return
        self._refuse(HTTPStatus.BAD_REQUEST, f"not a valid HTTP/1.1 request ({msg.rstrip('.').lower()})")

    def _arm_request_timer(self) -> None:
        if self._request_timer is None:
            self._request_timer = self.loop.call_later(self.request_timeout, self._request_timed_out)

    def _disarm_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete and not self._awaiting_head:
            # the head came in time and the app is answering: the body is late; the app's read ends with the close
            self.transport.close()
            return
        self._refuse(HTTPStatus.REQUEST_TIMEOUT,
                     f"the request did not arrive within this server's {self.request_timeout:g} s; send it whole")

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer `status` with {"error": message} and close the connection: what follows cannot be parsed."""
        self._disarm_request_timer()
        body = json.dumps({"error": message}).encode()
        head = (f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
        self.transport.write(head + body)
        self.transport.close()
