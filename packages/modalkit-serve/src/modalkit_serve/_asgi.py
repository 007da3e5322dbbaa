"""The pure-ASGI layer around the FastAPI app: request ids, the body-size limit, access log, request metrics.

Pure ASGI (not Starlette's BaseHTTPMiddleware, which runs every request through an extra task and memory
streams): per request it reads the headers once, wraps ``send`` to add ``x-request-id``, and after the response
records one metric observation and enqueues one access-log tuple.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modalkit_serve._ids import RequestIds, sane_request_id
from modalkit_serve._logging import AccessLog
from modalkit_serve._metrics import ServeMetrics

__all__ = ["REQUEST_INFO_KEY", "RequestInfo", "ServeMiddleware"]

logger = logging.getLogger("modalkit.serve")

REQUEST_INFO_KEY = "modalkit.request"
"""The ASGI scope key holding the request's `RequestInfo`."""

_REQUEST_ID = b"x-request-id"
_CONTENT_LENGTH = b"content-length"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RequestInfo:
    """What the access log says about one request; handlers and runners fill in the model and batch fields."""

    __slots__ = ("batch_size", "model", "queue_wait_ms", "request_id", "status")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.status = 0
        self.model: str | None = None
        self.batch_size: int | None = None
        self.queue_wait_ms: float | None = None


class _BodyTooLargeError(Exception):
    pass


class ServeMiddleware:
    """Request ids, body-size limit, JSON 500s, one access-log record and one metric observation per request.

    Args:
        app: The FastAPI app (its middleware stack).
        metrics: Where request counts and latencies go.
        max_body_bytes: Larger request bodies get 413 (from Content-Length before reading, or while reading a
            chunked body).
        routes: Route paths reported as metric labels; anything else (404s, scans) is reported as ``other``
            so a stranger cannot grow the label set.
    """

    def __init__(self, app: ASGIApp, *, metrics: ServeMetrics, max_body_bytes: int, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.routes = routes
        self.access_log = AccessLog()
        self.ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        raw_id: bytes | None = None
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                if raw_id is None:
                    raw_id = value
            elif name == _CONTENT_LENGTH:
                length = value
        request_id = sane_request_id(raw_id) if raw_id is not None else None
        if request_id is None:
            request_id = self.ids.new()
        id_header = (_REQUEST_ID, request_id.encode())
        info = RequestInfo(request_id)
        scope[REQUEST_INFO_KEY] = info

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                info.status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append(id_header)
                message["headers"] = headers
            await send(message)

        try:
            too_large = self._too_large(length)
            if too_large is not None:
                await self._error(send_with_id, too_large[0], too_large[1])
            else:
                if length is None and scope["method"] in _BODY_METHODS:
                    receive = self._limited(receive)
                await self.app(scope, receive, send_with_id)
        except _BodyTooLargeError:
            if info.status == 0:
                await self._error(send_with_id, 413, self._too_large_message())
        except Exception:
            logger.exception("unhandled error on %s %s (request %s)", scope["method"], scope["path"], request_id)
            if info.status == 0:
                await self._error(send_with_id, 500, "internal server error")
        finally:
            elapsed = time.perf_counter() - start
            status = info.status or 500
            route_obj = scope.get("route")
            route_path = getattr(route_obj, "path", None)
            route = route_path if route_path in self.routes else "other"
            self.metrics.observe_request(route, status, elapsed)
            self.access_log.log(
                (
                    request_id,
                    scope["method"],
                    scope["path"],
                    route,
                    info.model,
                    status,
                    elapsed * 1000.0,
                    info.batch_size,
                    info.queue_wait_ms,
                )
            )

    def _too_large(self, length: bytes | None) -> tuple[int, str] | None:
        if length is None:
            return None
        try:
            size = int(length)
        except ValueError:
            return 400, "the Content-Length header is not a number"
        if size < 0:
            return 400, "the Content-Length header is negative"
        if size > self.max_body_bytes:
            return 413, self._too_large_message()
        return None

    def _too_large_message(self) -> str:
        return f"request body is larger than {self.max_body_bytes} bytes (server_config.max_body_bytes)"

    def _limited(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError
            return message

        return limited_receive

    @staticmethod
    async def _error(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers: list[Any] = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if status == 413:
            headers.append((b"connection", b"close"))  # the unread body would otherwise be parsed as a request
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
