"""``/predict_stream`` on Modal: `ModalStreamService`, the container side of a stream.

modal 1.x does not let a ``@modal.batched`` method be a generator (a batched function is refused at definition; a
batched class method fails an assertion in the container's input loop), and a class with a batched method may
have no other Modal method. So streams take a second class: ``@modal.concurrent`` and not batched, with one
generator method, ``process_stream``, that the web endpoint calls with ``.remote_gen``. Each call runs on a
thread of its own (Modal's threads for a concurrent sync method) and feeds its input into serve's `Batcher`,
which lives on one event loop thread per container and model: streams in the same container share batches,
and one model call advances every stream of a batch, exactly as under ``modalkit serve``.

The method is a sync generator because modal 1.6's ``.local()`` awaits an async method's result, which an async
generator is not; a sync one works in the container and through ``.local()`` alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import modal
from pydantic import BaseModel

from modalkit._service import ModalService
from modalkit_pipeline import AsyncInputModel

if TYPE_CHECKING:
    from modalkit_serve import Batcher, Worker

__all__ = ["STREAM_METHOD", "ModalStreamService", "StreamHost"]

#: The name of the streaming method.
STREAM_METHOD = "process_stream"

_T = TypeVar("_T")


class StreamHost:
    """serve's `Batcher` for one model in a container, on an event loop thread of its own, fed from any thread.

    Args:
        worker: The model's worker (built by ``load_artefacts``).
        service: The stream class's instance (its ``modal_utils`` gives batching, limits and timeouts).
    """

    def __init__(self, worker: Worker, service: ModalService) -> None:
        from modalkit_serve import configured_batcher

        self.model_name = service.model_name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"modalkit-streams-{self.model_name}", daemon=True
        )
        self._thread.start()
        settings = service.modal_utils.settings

        async def build() -> Batcher:
            batcher = configured_batcher(worker, settings, self.model_name)
            batcher.start()
            return batcher

        self.batcher: Batcher = self._call(build())

    def stream(self, message: BaseModel) -> Iterator[BaseModel]:
        """One input's chunks, then maybe a failed result (`ItemError`). Closing the generator cancels the stream:
        its slot is freed and the model is told at its next step.

        Raises:
            NotReadyError, QueueFullError: the stream was refused (shutting down, too many waiting).
            RequestTimeoutError: no chunk within ``server_config.request_timeout_seconds``.
        """

        async def submit() -> Any:
            return self.batcher.submit_stream(message)

        item = self._call(submit())
        try:
            while True:
                try:
                    event: BaseModel = self._call(item.__anext__())
                except StopAsyncIteration:
                    return
                yield event
        finally:
            if not self._loop.is_closed():
                self._call(item.aclose())

    def close(self, timeout: float) -> None:
        """Finish the running batches (up to ``timeout`` seconds), then stop the loop thread."""
        if self._loop.is_closed():
            return
        try:
            self._call(self.batcher.close(timeout))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


def _stream_method(cls: type[ModalStreamService]) -> Any:
    """A fresh generator function per subclass, named like a method of it, for ``modal.method`` to wrap."""

    def process_stream(self: ModalStreamService, request: Any) -> Iterator[BaseModel]:
        yield from self._stream_request(request)

    process_stream.__qualname__ = f"{cls.__qualname__}.{STREAM_METHOD}"
    process_stream.__module__ = cls.__module__
    process_stream.__doc__ = (
        "Stream one SyncInputModel request: its chunks as the model makes them (streams in this container share "
        "batches), then an ItemError if it failed. Closing the generator cancels the stream."
    )
    return process_stream


class ModalStreamService(ModalService):
    """Base class for the Modal class that streams a `StreamingPipeline`'s chunks (``/predict_stream``).

    Declare it beside the batched `ModalService` class, with the same attributes, under
    ``@config.stream_cls(app)`` (``@app.cls`` plus ``@modal.concurrent`` sized so one container takes a
    batch's worth of streams), and pass it to ``create_web_endpoints(..., stream_cls=...)``. Its one Modal
    method, ``process_stream(request)``, is a generator: a `SyncInputModel` (or its dict) in, chunks out,
    ending with an `ItemError` when the input failed.
    """

    _modalkit_hosts: ClassVar[list[StreamHost]]
    _modalkit_hosts_lock: ClassVar[threading.Lock]

    @classmethod
    def _modalkit_add_method(cls, config: Any) -> None:
        cls._modalkit_hosts = []
        cls._modalkit_hosts_lock = threading.Lock()
        if STREAM_METHOD in cls.__dict__:
            return
        method = _stream_method(cls)
        setattr(cls, STREAM_METHOD, method if config is None else modal.method()(method))

    @classmethod
    def stream_host(cls, model_name: str) -> StreamHost | None:
        """The newest stream host of this class for ``model_name`` in this process (tests read its batcher)."""
        with cls._modalkit_hosts_lock:
            found = [h for h in cls._modalkit_hosts if h.model_name == model_name]
        return found[-1] if found else None

    @classmethod
    def close_stream_hosts(cls, timeout: float = 5.0) -> None:
        """Stop every stream host of this class in this process (tests; a container stops with its exit hook)."""
        with cls._modalkit_hosts_lock:
            hosts, cls._modalkit_hosts = cls._modalkit_hosts, []
        for host in hosts:
            host.close(timeout)

    def _stream_request(self, request: Any) -> Iterator[BaseModel]:
        item = self._coerce(request)
        if isinstance(item, AsyncInputModel):
            raise TypeError(f"{STREAM_METHOD} streams SyncInputModel requests; async jobs go to process_request")
        yield from self._host().stream(item.message)

    def _host(self) -> StreamHost:
        cls = type(self)
        with cls._modalkit_hosts_lock:
            host: StreamHost | None = getattr(self, "_modalkit_stream_host", None)
            if host is None:
                host = StreamHost(self._modalkit_worker, self)
                self._modalkit_stream_host = host
                cls._modalkit_hosts.append(host)
        return host
