"""The HTTP/1.1 connection edge: a bound on header size, header-read time and open connections.

uvicorn's httptools protocol sets no limit on a request's header block and no deadline for receiving it, and
its keep-alive timer starts only after a response: a client that connects and says nothing, or sends one header
line every few seconds (slowloris), holds a connection and its memory for as long as it likes. This protocol is
uvicorn's own, with three checks added where the bytes arrive:

- a header block (request line included) larger than ``max_header_bytes`` is answered ``431`` and the
  connection closed, after reading at most one socket read past the limit (the way hyper, under Granian,
  refuses an over-full header buffer; h11, under Hypercorn and uvicorn's h11 mode, bounds it the same way with
  ``max_incomplete_event_size`` but answers 400);
- a connection that has not finished sending its headers ``header_timeout_seconds`` after it opened (or after it
  began its next request) is answered ``408`` and closed (hyper's ``header_read_timeout``); an idle keep-alive
  connection is closed by uvicorn's ``timeout_keep_alive``;
- beyond ``max_connections`` open connections (never more than the file-descriptor limit allows), a new one is
  answered ``503`` and closed at once, so the process never runs out of file descriptors.
"""

from __future__ import annotations

import asyncio
import json
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from modalkit_config import ServerConfig

__all__ = ["FD_RESERVE", "edge_protocol", "effective_max_connections"]

FD_RESERVE = 64
"""File descriptors kept for everything but client connections (logs, journal, queue clients, the listener)."""


def effective_max_connections(configured: int) -> int:
    """``configured``, lowered to what the process's file-descriptor limit leaves for client connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - FD_RESERVE))


def edge_protocol(server: ServerConfig) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol class with ``server``'s header, timeout and connection bounds."""

    class EdgeProtocol(_EdgeProtocol):
        max_header_bytes = server.max_header_bytes
        header_timeout = server.header_timeout_seconds
        max_connections = effective_max_connections(server.max_connections)

    return EdgeProtocol


class _EdgeProtocol(HttpToolsProtocol):
    max_header_bytes = 32768
    header_timeout = 10.0
    max_connections = 1000

    _reading_headers = True
    _header_bytes = 0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse(503, "too many open connections (server_config.max_connections); retry shortly")
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading = self._reading_headers
        if reading:
            self._header_bytes += len(data)
            if self._header_timer is None:
                self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self._reading_headers and self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse(
                431,
                f"the request headers are larger than {self.max_header_bytes} bytes (server_config.max_header_bytes)",
            )

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_headers = True
        self._header_bytes = 0

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_time_up)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_time_up(self) -> None:
        self._header_timer = None
        if not self._reading_headers or self.transport.is_closing():
            return
        if self._header_bytes:
            self._refuse(
                408, f"the request headers did not arrive within {self.header_timeout:g}s (header_timeout_seconds)"
            )
        else:
            self.transport.close()  # said nothing: nothing to answer

    def _refuse(self, status: int, detail: str) -> None:
        self._disarm()
        body = json.dumps({"detail": detail}).encode()
        head: list[Any] = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(head))
        self.transport.close()
