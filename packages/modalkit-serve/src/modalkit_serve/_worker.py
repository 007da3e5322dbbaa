"""Worker: the one place a batch runs, locally (in the batcher's thread) and inside a Modal container."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from modalkit_pipeline import (
    AsyncInputModel,
    InferenceOutputModel,
    InferencePipeline,
    ItemError,
    StreamingPipeline,
    SyncInputModel,
    is_failure,
)
from modalkit_pipeline.errors import OutputCountError
from modalkit_queue import result_message
from modalkit_serve._ids import new_job_id

__all__ = ["Sender", "Worker", "attach_meta", "is_fatal_error", "safe_error_message"]

logger = logging.getLogger("modalkit.worker")

# torch raises these for CUDA failures (torch.cuda.CudaError; torch.AcceleratorError since 2.8). After one of
# them the CUDA context is usually corrupt: every later batch on this process would fail or, worse, be wrong.
_FATAL_CLASS_NAMES = frozenset({"CudaError", "CUDAError", "AcceleratorError"})
_FATAL_TEXT = "CUDA error"
_MAX_ERROR_CHARS = 500


class Sender(Protocol):
    """Where async results go: `modalkit_queue.ReliableSender` (thread-safe, never blocks)."""

    def submit(self, queue_name: str, message: str, job_id: str) -> None:
        """Queue one message for delivery; raises when the outbox is full."""


def is_fatal_error(exc: BaseException) -> bool:
    """Whether an exception (or one it was raised from) is a CUDA error, which leaves the process unusable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(klass.__name__ in _FATAL_CLASS_NAMES for klass in type(current).__mro__):
            return True
        try:
            text = str(current)
        except Exception:  # a broken __str__ must not hide the original failure
            text = ""
        if _FATAL_TEXT in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def safe_error_message(exc: BaseException) -> str:
    """What a client may see about an exception: its type and message, bounded, never a stack trace."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(message) > _MAX_ERROR_CHARS:
        message = message[: _MAX_ERROR_CHARS - 3] + "..."
    return message


def attach_meta(request: AsyncInputModel[Any], result: BaseModel) -> None:
    """Give an async request's output the request's ``meta`` (the earlier modalkit's contract), before anything
    records or delivers it."""
    if request.meta and isinstance(result, InferenceOutputModel):
        result.meta = dict(request.meta)


class Worker:
    """Runs batches through one pipeline, keeping one bad item from failing the rest of its batch.

    Thread-safe: batches and volume reloads on one worker never overlap (one model, one accelerator).
    It is synchronous and needs no event loop, so Modal's batched method can call it directly.

    Args:
        pipeline: The loaded pipeline.
        sender: Delivers async results (`modalkit_queue.ReliableSender`). Without one, async results are
            logged at ERROR level (with their payload) instead of being delivered.
        on_fatal: Called once, with the exception, when a CUDA error makes this process unusable
            (on Modal: stop fetching inputs). Errors it raises are logged.
    """

    def __init__(
        self,
        pipeline: InferencePipeline[Any, Any],
        sender: Sender | None = None,
        on_fatal: Callable[[BaseException], object] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.sender = sender
        self.on_fatal = on_fatal
        self.fatal_error: BaseException | None = None
        self._lock = threading.Lock()
        self._name = getattr(pipeline, "model_name", type(pipeline).__name__)

    @property
    def ready(self) -> bool:
        """False once a fatal error stopped this worker."""
        return self.fatal_error is None

    def run_batch(
        self,
        items: Sequence[SyncInputModel[Any] | AsyncInputModel[Any]],
        job_ids: Sequence[str | None] | None = None,
    ) -> list[BaseModel]:
        """Run one batch of requests and deliver the async ones.

        Args:
            items: Sync and async requests, in any mix.
            job_ids: The job id of each item (None for sync items); async items without one get a new id.

        Returns:
            One result per item, in order: the pipeline's output, or an `ItemError` for an item that failed. An
            `ItemError` the pipeline returned is kept as it is (``kind="input"`` unless it said otherwise); the
            ones made here, for items the pipeline raised on, after a fatal error, or for a postprocess that broke
            the contract, are ``kind="internal"``.
        """
        messages = [item.message for item in items]
        jobs: dict[int, tuple[AsyncInputModel[Any], str]] = {}
        for i, item in enumerate(items):
            if isinstance(item, AsyncInputModel):
                given = job_ids[i] if job_ids is not None else None
                jobs[i] = (item, given or new_job_id())
        return self.run_messages(messages, jobs)

    def run_messages(
        self,
        messages: list[BaseModel],
        async_jobs: Mapping[int, tuple[AsyncInputModel[Any], str]] | None = None,
        indices: Sequence[int] | None = None,
    ) -> list[BaseModel]:
        """Like `run_batch`, on the bare input models: the batcher's path, which skips wrapping every item.

        Args:
            messages: The inputs.
            async_jobs: For the positions that are async requests: the request and its job id.
            indices: Each input's position in its caller's request, which its `ItemError` reports as ``index``
                (the batch may hold several callers' requests). Default: its position in ``messages``, and 0
                for an async request (a job is one item).

        Returns:
            One result per input, in order.
        """
        if not messages:
            return []
        with self._lock:
            results = self._infer(messages)
        _set_caller_indices(results, indices, async_jobs)
        if async_jobs:
            for i, (request, job_id) in async_jobs.items():
                attach_meta(request, results[i])
                self.deliver(request, results[i], job_id)
        return results

    def stream_steps(
        self, messages: list[BaseModel]
    ) -> Generator[list[tuple[int, BaseModel | None]], frozenset[int] | None, None]:
        """Stream one batch through a `StreamingPipeline`, one model call per step (see its ``run_steps``).

        Yields each step's ``(position, event)`` pairs; send the positions cancelled since the last step. When
        the pipeline raises (or breaks the stream contract), every stream still open ends with an internal
        `ItemError`: chunks already sent cannot be taken back, so a batch is not re-run to isolate the input.
        """
        pipeline = self.pipeline
        if not isinstance(pipeline, StreamingPipeline):
            raise TypeError(f"{type(pipeline).__name__} is not a StreamingPipeline")
        if self.fatal_error is not None:
            yield self._all_failed_at(
                range(len(messages)), "worker stopped after a fatal error; the service is not ready"
            )
            return
        open_items = set(range(len(messages)))
        steps = pipeline.run_steps(messages)
        sent: frozenset[int] | None = None
        started = False
        try:
            while True:
                failure: str | None = None
                with self._lock:
                    try:
                        events = steps.send(sent) if started else next(steps)
                    except StopIteration:
                        return
                    except Exception as exc:
                        failure = self._stream_failure(exc, len(messages))
                started = True
                if failure is not None:
                    yield self._all_failed_at(sorted(open_items), failure)
                    return
                for i, event in events:
                    if not isinstance(event, BaseModel) or isinstance(event, ItemError):
                        open_items.discard(i)
                sent = yield events
                if sent:
                    open_items -= sent
        finally:
            steps.close()

    def _stream_failure(self, exc: Exception, n: int) -> str:
        if is_fatal_error(exc):
            self._fatal(exc)
            return f"fatal error, worker stopped: {safe_error_message(exc)}"
        logger.error("%s failed while streaming a batch of %d", self._name, n, exc_info=exc)
        return safe_error_message(exc)

    @staticmethod
    def _all_failed_at(positions: Iterable[int], message: str) -> list[tuple[int, BaseModel | None]]:
        return [(i, ItemError(error=message, index=0, kind="internal")) for i in positions]

    def deliver(self, request: AsyncInputModel[Any], result: BaseModel, job_id: str) -> None:
        """Send one async result to its success or failure queue (skipped when that queue name is empty).

        The message is the result's JSON object plus ``job_id`` and the request's ``meta``; a failure also
        carries ``original_message`` (the request), like the earlier modalkit's DelayedFailureOutputModel.
        """
        failed = is_failure(result)
        queue = request.failure_queue if failed else request.success_queue
        if not queue:
            return
        body: dict[str, Any] = result.model_dump(mode="json")
        if failed:
            body["original_message"] = request.model_dump(mode="json")
        payload = result_message(body, job_id, request.meta)
        if self.sender is None:
            logger.error(
                "no queue sender configured; async result for job %s to queue %r not delivered",
                job_id,
                queue,
                extra={"job_id": job_id, "queue": queue, "payload": payload},
            )
            return
        try:
            self.sender.submit(queue, payload, job_id)
        except Exception as exc:
            logger.error(
                "could not hand the result of job %s to the queue sender for %r: %s",
                job_id,
                queue,
                safe_error_message(exc),
                extra={"job_id": job_id, "queue": queue, "payload": payload},
            )

    def on_volume_reload(self) -> bool:
        """Tell the pipeline its volumes were reloaded. Errors are logged, not raised.

        Returns:
            Whether the pipeline's hook succeeded.
        """
        with self._lock:
            try:
                self.pipeline.on_volume_reload()
            except Exception:
                logger.exception("%s.on_volume_reload failed; still serving the artefacts already loaded", self._name)
                return False
        return True

    def reload_volumes(self, reload: Callable[[], object]) -> bool:
        """Run ``reload`` (e.g. reload every Modal volume) between batches, then the pipeline's hook.

        Errors are logged, not raised; when ``reload`` fails the hook is not called.

        Returns:
            Whether both steps succeeded.
        """
        with self._lock:
            try:
                reload()
            except Exception:
                logger.exception("volume reload failed for %s; keeping the current artefacts", self._name)
                return False
        return self.on_volume_reload()

    # -- internals -------------------------------------------------------------------------------------------

    def _infer(self, messages: list[BaseModel]) -> list[BaseModel]:
        if self.fatal_error is not None:
            return self._all_failed(len(messages), "worker stopped after a fatal error; the service is not ready")
        state = _IsolationState()
        return self._run(messages, 0, state)

    def _run(self, messages: list[BaseModel], offset: int, state: _IsolationState) -> list[BaseModel]:
        if self.fatal_error is not None:
            return self._all_failed(len(messages), "worker stopped after a fatal error; the service is not ready")
        try:
            outputs = self.pipeline.run_inference(messages)
        except OutputCountError as exc:
            # A bug in postprocess, not in any one input: re-running pieces of the batch cannot help.
            logger.error("%s", exc)
            return self._all_failed(len(messages), str(exc))
        except Exception as exc:
            if is_fatal_error(exc):
                self._fatal(exc)
                return self._all_failed(len(messages), f"fatal error, worker stopped: {safe_error_message(exc)}")
            if len(messages) == 1:
                self._log_item_failure(exc, offset, state)
                return [ItemError(error=safe_error_message(exc), index=offset, kind="internal")]
            if not state.split_logged:
                state.split_logged = True
                logger.warning(
                    "%s raised on a batch of %d (%s); re-running it in halves to isolate the failing items",
                    self._name,
                    len(messages),
                    safe_error_message(exc),
                )
            # Bisect: items that fail only in some company still get their answer; a lone bad item costs
            # about 2*log2(n) extra runs instead of n.
            mid = len(messages) // 2
            return self._run(messages[:mid], offset, state) + self._run(messages[mid:], offset + mid, state)
        return [self._checked(out, offset + i) for i, out in enumerate(outputs)]

    def _checked(self, out: object, index: int) -> BaseModel:
        if isinstance(out, BaseModel):
            if type(out) is ItemError or "ser_json_inf_nan" in type(out).model_config:
                return out  # an output model that chose how to spell NaN keeps its choice
            found = _non_finite(out, ())
            if found is None:
                return out
            path, value = found
            where = ".".join(str(key) for key in path)
            logger.error("%s returned %r in its output field %r for item %d", self._name, value, where, index)
            return ItemError(
                error=f"the output field {where!r} is {value!r}: JSON has no NaN or Infinity and a number is never "
                "sent as null (set ser_json_inf_nan on the output model to send such values as strings)",
                index=index,
                kind="internal",
            )
        logger.error("%s returned a %s for item %d, not a pydantic model", self._name, type(out).__name__, index)
        return ItemError(
            error=f"the pipeline returned a {type(out).__name__}, not its output model", index=index, kind="internal"
        )

    def _log_item_failure(self, exc: Exception, index: int, state: _IsolationState) -> None:
        # One stack trace per batch is enough to debug; the rest would repeat it.
        if not state.trace_logged:
            state.trace_logged = True
            logger.error("%s failed on item %d of a batch", self._name, index, exc_info=exc)
        else:
            logger.error("%s failed on item %d of a batch: %s", self._name, index, safe_error_message(exc))

    def _fatal(self, exc: BaseException) -> None:
        if self.fatal_error is not None:
            return
        self.fatal_error = exc
        logger.critical("%s hit a fatal CUDA error; this worker stops taking work", self._name, exc_info=exc)
        if self.on_fatal is not None:
            try:
                self.on_fatal(exc)
            except Exception:
                logger.exception("the on_fatal callback failed")

    @staticmethod
    def _all_failed(n: int, message: str) -> list[BaseModel]:
        return [ItemError(error=message, index=i, kind="internal") for i in range(n)]


def _set_caller_indices(
    results: list[BaseModel],
    indices: Sequence[int] | None,
    async_jobs: Mapping[int, tuple[AsyncInputModel[Any], str]] | None,
) -> None:
    """Make every `ItemError` say the caller's index, not where the item sat in the batch or in a bisected half.

    Whatever index the pipeline gave (``item_error(..., index=i)`` counts within the inputs it was handed) is
    replaced: only the server knows which request an item came from.
    """
    for i, result in enumerate(results):
        if isinstance(result, ItemError):
            index = indices[i] if indices is not None else (0 if async_jobs and i in async_jobs else i)
            if result.index != index:
                results[i] = result.model_copy(update={"index": index})


def _non_finite(value: object, path: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], float] | None:
    """The first NaN or infinite float inside an output (its key path and value), or None."""
    kind = type(value)
    if kind is float:
        number = float(value)  # type: ignore[arg-type]
        return None if number - number == 0.0 else (path, number)  # nan - nan and inf - inf are nan
    if kind is list or kind is tuple:
        items: Sequence[Any] = value  # type: ignore[assignment]
        try:
            total = sum(items)  # C speed for a list of numbers: finite unless an item is not (or they overflow)
        except TypeError:
            pass
        else:
            if total - total == 0.0:
                return None
        for i, item in enumerate(items):
            found = _non_finite(item, (*path, i))
            if found is not None:
                return found
        return None
    if isinstance(value, BaseModel):
        fields: Mapping[str, Any] = value.__dict__
    elif isinstance(value, dict):
        fields = value
    else:
        return None
    for key, item in fields.items():
        found = _non_finite(item, (*path, key))
        if found is not None:
            return found
    return None


class _IsolationState:
    """What was already logged while isolating the failures of one batch."""

    __slots__ = ("split_logged", "trace_logged")

    def __init__(self) -> None:
        self.split_logged = False
        self.trace_logged = False
