"""Streams for ``/predict_stream``: the buffer between the batch thread and a reader, and the SSE encoding.

The batch thread advances every stream of a batch one model call at a time and hands each step's events to the
event loop in one call; each stream's events wait in its `StreamItem` until its reader takes them. A reader
that falls `StreamItem.limit` chunks behind pauses its batch (the model is not asked for more), so a slow client
never makes the server hold more than that many chunks for it; one that stays that far behind for
``stall_seconds`` is cut off so that its batch-mates can go on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Literal, Protocol

from pydantic import BaseModel

from modalkit_pipeline import ItemError, is_failure
from modalkit_serve.errors import RequestTimeoutError, ServeError

__all__ = [
    "SSE_HEADERS",
    "ChunkStream",
    "EventStream",
    "SlowReaderError",
    "StreamDone",
    "StreamError",
    "StreamItem",
]

logger = logging.getLogger("modalkit.serve")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx-style proxies not to buffer the stream
]

StreamEvent = BaseModel | BaseException | None
"""What a `StreamItem` holds: a chunk, a final `ItemError`, an error raised to the reader, or None (done)."""


class StreamDone(BaseModel):
    """The data of the last event of a stream that finished (``event: done``)."""

    status: Literal["success"] = "success"
    chunks: int
    """How many chunks the stream sent."""


class StreamError(BaseModel):
    """The data of the last event of a stream that failed (``event: error``); no chunk follows it."""

    status: Literal["error"] = "error"
    detail: str
    """What went wrong, for a person (never a stack trace)."""
    kind: Literal["input", "internal", "timeout", "slow_reader", "unavailable"]
    """``input``: the pipeline refused the input; ``internal``: the model failed; ``timeout``: no chunk within
    ``server_config.request_timeout_seconds``; ``slow_reader``: the client stopped reading; ``unavailable``:
    the service is shutting down or stopped."""


class SlowReaderError(ServeError):
    """A stream whose reader fell too far behind for too long was cancelled."""

    status_code = 503


class ChunkStream(Protocol):
    """What a streaming runner returns: chunks, then maybe one failed result (`ItemError`); ``aclose`` cancels."""

    def __aiter__(self) -> ChunkStream:
        """Itself."""
        ...

    async def __anext__(self) -> BaseModel:
        """The next chunk, or a final failed result; raises StopAsyncIteration when done."""
        ...

    async def aclose(self) -> None:
        """Cancel the stream if it is still running (the model stops working on it)."""
        ...


class StreamItem:
    """One stream's place in the batcher and its unread events.

    The batch thread counts the chunks it handed over (``posted``); everything else happens on the event loop.
    Iterate it for the events (`ChunkStream`); ``aclose`` (or `cancel`) cancels it.

    Args:
        message: The input.
        submitted: ``time.perf_counter()`` when it was queued.
        on_read: Called on the loop when a read brings the unread chunks below ``limit`` (the batch may go on).
        on_cancel: Called on the loop, once, when the reader cancels an unfinished stream.
        limit: The most chunks held unread before the stream's batch pauses.
    """

    __slots__ = (
        "_events",
        "_waiter",
        "batch_size",
        "cancelled",
        "consumed",
        "deadline",
        "finished",
        "last_event",
        "limit",
        "message",
        "on_cancel",
        "on_read",
        "posted",
        "queue_wait",
        "submitted",
    )

    def __init__(
        self,
        message: BaseModel,
        submitted: float,
        *,
        on_read: Callable[[StreamItem], object],
        on_cancel: Callable[[StreamItem], object],
        limit: int,
    ) -> None:
        self.message = message
        self.submitted = submitted
        self.last_event = submitted
        self.deadline = 0.0
        self.on_read = on_read
        self.on_cancel = on_cancel
        self.limit = limit
        self.posted = 0  # written by the batch thread only
        self.consumed = 0  # written by the loop only
        self.cancelled = False  # the thread reads it before each step of the stream's batch
        self.finished = False  # the final event arrived (or the stream was cancelled)
        self.batch_size = 0
        self.queue_wait = 0.0
        self._events: deque[StreamEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def unread(self) -> int:
        """Chunks handed over by the thread and not read yet."""
        return self.posted - self.consumed

    # -- the batcher's side (event loop) -------------------------------------------------------------------

    def push(self, event: StreamEvent, now: float) -> bool:
        """Add one event from the model; returns whether it ended the stream."""
        if self.finished:
            return False
        self._events.append(event)
        self.last_event = now
        final = not isinstance(event, BaseModel) or _failed(event)
        if final:
            self.finished = True
        self._wake()
        return final

    def fail(self, error: BaseException) -> None:
        """End the stream with an error raised to its reader; the model is told to stop at its next step."""
        if self.finished:
            return
        self.cancelled = True
        self.finished = True
        self._events.append(error)
        self._wake()

    def cancel(self) -> None:
        """The reader went away: drop what is unread and tell the model (at its next step)."""
        self._events.clear()
        if self.finished:
            return
        self.cancelled = True
        self.finished = True
        self.on_cancel(self)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the reader's side (ChunkStream) -------------------------------------------------------------------

    def __aiter__(self) -> StreamItem:
        return self

    async def __anext__(self) -> BaseModel:
        events = self._events
        while not events:
            if self.finished:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = events.popleft()
        if event is None:
            raise StopAsyncIteration
        if isinstance(event, BaseException):
            raise event
        if not _failed(event):
            self.consumed += 1
            if self.unread == self.limit - 1:
                self.on_read(self)
        return event

    async def aclose(self) -> None:
        self.cancel()


class EventStream:
    """A stream whose first event is known: its SSE frames, as ``/predict_stream`` sends them.

    Args:
        stream: The rest of the stream.
        first: Its first chunk, or None when it ended before any.
    """

    def __init__(self, stream: ChunkStream, first: BaseModel | None) -> None:
        self.stream = stream
        self.first = first

    async def frames(self) -> AsyncIterator[bytes]:
        """``data: <chunk JSON>`` per chunk, then ``event: done`` or ``event: error``; closes the stream at the end
        or when the reader goes away (cancelled while waiting)."""
        stream = self.stream
        chunks = 0
        try:
            event = self.first
            while event is not None:
                if _failed(event):
                    detail = getattr(event, "error", None) or "the pipeline failed on this input"
                    yield _error_frame(detail, _kind(event))
                    return
                chunks += 1
                yield b"data: " + type(event).__pydantic_serializer__.to_json(event) + b"\n\n"
                try:
                    event = await stream.__anext__()
                except StopAsyncIteration:
                    event = None
                except ServeError as exc:
                    yield _error_frame(str(exc), _serve_error_kind(exc))
                    return
                except Exception:
                    logger.exception("a stream failed outside the pipeline")
                    yield _error_frame("internal error while streaming", "internal")
                    return
            yield b"event: done\ndata: " + json.dumps({"status": "success", "chunks": chunks}).encode() + b"\n\n"
        finally:
            await stream.aclose()


def _failed(event: BaseModel) -> bool:
    return is_failure(event)


def _kind(event: BaseModel) -> Literal["input", "internal"]:
    return "internal" if isinstance(event, ItemError) and event.kind == "internal" else "input"


def _serve_error_kind(exc: ServeError) -> Literal["internal", "timeout", "slow_reader", "unavailable"]:
    if isinstance(exc, RequestTimeoutError):
        return "timeout"
    if isinstance(exc, SlowReaderError):
        return "slow_reader"
    if exc.status_code == 503:
        return "unavailable"
    return "internal"


def _error_frame(detail: str, kind: str) -> bytes:
    return b"event: error\ndata: " + json.dumps({"status": "error", "detail": detail, "kind": kind}).encode() + b"\n\n"
