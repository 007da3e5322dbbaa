"""The pure-ASGI layer around the whole FastAPI app: request ids, body limit, JSON 500s, access log, metrics.

Pure ASGI (not Starlette's BaseHTTPMiddleware, which runs every request through an extra task and memory
streams): per request it reads the headers once, wraps ``send`` to add ``x-request-id``, and after the response
records one metric observation and enqueues one access-log tuple.

It also serves the three predict routes itself (the "fast path"): their handlers are the same functions the
FastAPI endpoints call, but reached without FastAPI's routing, dependency solving and exception layers, which
cost more per request than the model does on a small model. FastAPI still serves everything else, documents the
predict routes in OpenAPI, and serves them too when the fast path is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modalkit_serve._forms import is_form_content_type
from modalkit_serve._ids import RequestIds, sane_request_id
from modalkit_serve._logging import AccessLog
from modalkit_serve._metrics import ServeMetrics
from modalkit_serve._streams import SSE_HEADERS, EventStream

__all__ = [
    "REQUEST_INFO_KEY",
    "UNSUPPORTED_MEDIA_TYPE",
    "FastHandler",
    "FormBody",
    "RequestInfo",
    "ServeMiddleware",
    "StreamFastHandler",
    "is_json_content_type",
]

logger = logging.getLogger("modalkit.serve")

REQUEST_INFO_KEY = "modalkit.request"
"""The ASGI scope key holding the request's `RequestInfo`."""

_REQUEST_ID = b"x-request-id"
_CONTENT_LENGTH = b"content-length"
_CONTENT_TYPE = b"content-type"
_JSON = (b"content-type", b"application/json")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RequestInfo:
    """What the access log says about one request; handlers and runners fill in the model and batch fields."""

    __slots__ = ("batch_size", "model", "owner", "queue_wait_ms", "request_id", "status")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.status = 0
        self.model: str | None = None
        # Who is calling, as the authenticator identifies them (a digest of the credential, never the credential):
        # an async job is tied to it and shown to nobody else. None without auth.
        self.owner: str | None = None
        self.batch_size: int | None = None
        self.queue_wait_ms: float | None = None


FastHandler = Callable[[bytes, bytes, RequestInfo], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]]
"""(body, query string, info) -> (status, JSON body, extra headers)."""
StreamFastHandler = Callable[
    [bytes, bytes, RequestInfo], Awaitable["tuple[int, bytes, list[tuple[bytes, bytes]]] | EventStream"]
]
"""Like `FastHandler`, or the `EventStream` of a stream that started."""
FormBody = Callable[
    [AsyncIterator[bytes], bytes, "str | None", "str | None"],
    Awaitable["bytes | tuple[int, bytes, list[tuple[bytes, bytes]]]"],
]
"""(body chunks, Content-Type, Origin, Host) -> the JSON body a multipart form stands for, or the refusal reply."""
AuthCheck = Callable[[Sequence[tuple[bytes, bytes]]], "tuple[int, bytes, list[tuple[bytes, bytes]]] | None"]
"""(raw request headers) -> None when allowed, else the refusal reply."""
Identify = Callable[[Sequence[tuple[bytes, bytes]]], "str | None"]
"""(raw request headers) -> the caller's identity (`RequestInfo.owner`), or None."""


class _BodyTooLargeError(HTTPException):
    """Raised while reading an over-long chunked body; an HTTPException so FastAPI's routes answer 413 too."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes (server_config.max_body_bytes)")


class _ClientGoneError(Exception):
    pass


class _RefusedError(Exception):
    """A request refused while its body was read; carries the reply."""

    def __init__(self, reply: tuple[int, bytes, list[tuple[bytes, bytes]]]) -> None:
        super().__init__("refused")
        self.reply = reply


class ServeMiddleware:
    """Wraps the FastAPI app's middleware stack (it is the outermost layer, so every response gets an id).

    Args:
        app: The FastAPI middleware stack (set later by the app when it builds its stack).
        metrics: Where request counts and latencies go.
        max_body_bytes: Larger request bodies get 413 (from Content-Length before reading, or while reading a
            chunked body).
        routes: Route paths reported as metric labels; anything else (404s, scans) is reported as ``other``
            so a stranger cannot grow the label set.
        fast: ``POST`` path -> handler, for the routes served here directly.
        auth_check: Run before a fast-path handler (the FastAPI routes use the auth dependency instead).
        identify: Names the caller from the request headers, for `RequestInfo.owner` (job ownership).
        streams: ``POST`` path -> handler, for the streaming routes served here directly (Server-Sent Events;
            a client that disconnects cancels its stream).
        forms: Reads a ``multipart/form-data`` body into the JSON body it stands for, on the fast-path routes
            named in ``form_paths`` (the others answer a form with 415).
        form_paths: The paths that take forms.
    """

    def __init__(
        self,
        app: ASGIApp | None,
        *,
        metrics: ServeMetrics,
        max_body_bytes: int,
        routes: frozenset[str],
        fast: Mapping[str, FastHandler] | None = None,
        auth_check: AuthCheck | None = None,
        identify: Identify | None = None,
        streams: Mapping[str, StreamFastHandler] | None = None,
        forms: FormBody | None = None,
        form_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.routes = routes
        self.fast = dict(fast or {})
        self.auth_check = auth_check
        self.identify = identify
        self.streams = dict(streams or {})
        self.forms = forms
        self.form_paths = form_paths if forms is not None else frozenset()
        self.access_log = AccessLog()
        self.ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            assert self.app is not None
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        raw_id: bytes | None = None
        length: bytes | None = None
        content_type: bytes | None = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                if raw_id is None:
                    raw_id = value
            elif name == _CONTENT_LENGTH:
                length = value
            elif name == _CONTENT_TYPE:
                content_type = value
        request_id = sane_request_id(raw_id) if raw_id is not None else None
        if request_id is None:
            request_id = self.ids.new()
        id_header = (_REQUEST_ID, request_id.encode())
        info = RequestInfo(request_id)
        if self.identify is not None:
            info.owner = self.identify(scope["headers"])
        scope[REQUEST_INFO_KEY] = info
        path = _route_path(scope)
        method: str = scope["method"]
        fast = self.fast.get(path) if method == "POST" else None
        streamer = self.streams.get(path) if method == "POST" else None
        route = path if fast is not None or streamer is not None else None

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
                await _reply(send, too_large[0], _detail(too_large[1]), [id_header], close=too_large[0] == 413)
                info.status = too_large[0]
            elif (
                (fast is not None or streamer is not None)
                and not is_json_content_type(content_type)
                and not (path in self.form_paths and is_form_content_type(content_type))
            ):
                await _reply(send, 415, _detail(UNSUPPORTED_MEDIA_TYPE), [id_header])
                info.status = 415
            elif streamer is not None:
                await self._stream(streamer, scope, receive, send, info, id_header)
            elif fast is not None:
                status, body, headers = await self._fast(fast, scope, receive, info)
                headers.append(id_header)
                await _reply(send, status, body, headers)
                info.status = status
            else:
                if length is None and method in _BODY_METHODS:
                    receive = self._limited(receive)
                assert self.app is not None
                await self.app(scope, receive, send_with_id)
        except _RefusedError as refused:
            if info.status == 0:
                status, body, headers = refused.reply
                info.status = status
                await _reply(send, status, body, [*headers, id_header], close=True)
        except _BodyTooLargeError:
            if info.status == 0:
                info.status = 413
                await _reply(send, 413, _detail(self._too_large_message()), [id_header], close=True)
        except _ClientGoneError:
            info.status = 499  # nginx's code for "client closed the request"; only ever logged
        except Exception:
            logger.exception("unhandled error on %s %s (request %s)", method, scope["path"], request_id)
            if info.status == 0:
                info.status = 500
                await _reply(send, 500, _detail("internal server error"), [id_header])
        finally:
            elapsed = time.perf_counter() - start
            status = info.status or 500
            if route is None:
                route_path = getattr(scope.get("route"), "path", None)
                route = route_path if route_path in self.routes else "other"
            self.metrics.observe_request(route, status, elapsed)
            self.access_log.log(
                (
                    request_id,
                    method,
                    scope["path"],
                    route,
                    info.model,
                    status,
                    elapsed * 1000.0,
                    info.batch_size,
                    info.queue_wait_ms,
                )
            )

    async def _fast(
        self, handler: FastHandler, scope: Scope, receive: Receive, info: RequestInfo
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if self.auth_check is not None:
            refused = self.auth_check(scope["headers"])
            if refused is not None:
                return refused[0], refused[1], list(refused[2])
        body = await self._read_body(receive, scope)
        status, reply, reply_headers = await handler(body, scope["query_string"], info)
        return status, reply, list(reply_headers)

    async def _stream(
        self,
        handler: StreamFastHandler,
        scope: Scope,
        receive: Receive,
        send: Send,
        info: RequestInfo,
        id_header: tuple[bytes, bytes],
    ) -> None:
        """Answer a streaming route: a JSON reply when refused, else SSE frames until done or the client goes."""
        if self.auth_check is not None:
            refused = self.auth_check(scope["headers"])
            if refused is not None:
                await _reply(send, refused[0], refused[1], [*refused[2], id_header])
                info.status = refused[0]
                return
        body = await self._read_body(receive, scope)

        async def answer() -> None:
            result = await handler(body, scope["query_string"], info)
            if not isinstance(result, EventStream):
                status, reply, headers = result
                await _reply(send, status, reply, [*headers, id_header])
                info.status = status
                return
            await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, id_header]})
            info.status = 200
            async for frame in result.frames():
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        # The client may go away at any time, while the stream waits for its first chunk or between chunks
        # (a server sending into a closed connection is not told): watch for it beside the stream.
        work = asyncio.ensure_future(answer())
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, watch):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task  # the stream's own cleanup (cancel it in the batcher) runs here
        if not work.cancelled():
            work.result()
            return
        info.status = 499  # logged only: the client closed the connection

    async def _read_body(self, receive: Receive, scope: Scope) -> bytes:
        if self.forms is not None and _route_path(scope) in self.form_paths:
            headers = dict(scope["headers"])
            content_type = headers.get(_CONTENT_TYPE)
            if is_form_content_type(content_type):
                assert content_type is not None
                origin, host = headers.get(b"origin"), headers.get(b"host")
                result = await self.forms(
                    self._chunks(receive),
                    content_type,
                    None if origin is None else origin.decode("latin-1"),
                    None if host is None else host.decode("latin-1"),
                )
                if isinstance(result, tuple):
                    raise _RefusedError(result)
                return result
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGoneError
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            size = len(body)
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise _ClientGoneError
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise _BodyTooLargeError(self.max_body_bytes)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        elif len(body) > self.max_body_bytes:
            raise _BodyTooLargeError(self.max_body_bytes)
        return body

    async def _chunks(self, receive: Receive) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGoneError
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLargeError(self.max_body_bytes)
            yield chunk
            if not message.get("more_body", False):
                return

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
                    raise _BodyTooLargeError(limit)
            return message

        return limited_receive


UNSUPPORTED_MEDIA_TYPE = "send the body as JSON, with the header Content-Type: application/json"


def is_json_content_type(value: bytes | None) -> bool:
    """Whether a request's Content-Type allows a JSON body: absent, ``application/json`` or ``application/*+json``.

    Refusing other types (``text/plain``, forms) matters beyond tidiness: a web page can send those to a
    service on localhost without a CORS preflight, and must not be able to run predictions that way.
    """
    if value is None:
        return True
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _route_path(scope: Scope) -> str:
    """The request's path without the app's root path."""
    path: str = scope["path"]
    root = scope.get("root_path")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _detail(text: str) -> bytes:
    return json.dumps({"detail": text}).encode()


async def _reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, close: bool = False
) -> None:
    raw: list[Any] = [_JSON, (b"content-length", str(len(body)).encode()), *headers]
    if close:
        raw.append((b"connection", b"close"))  # an unread body would otherwise be parsed as the next request
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
