"""Reliable, at-least-once delivery around any queue backend: outbox, retries, dead letter."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from modalkit_config import QueueConfig, RetryConfig
from modalkit_queue._protocol import BatchQueueBackend, QueueBackend
from modalkit_queue._registry import create_backend
from modalkit_queue.errors import BatchDeliveryError, OutboxFullError, QueueConfigError, SenderClosedError

__all__ = ["DeliveryEvent", "ReliableSender", "RetryPolicy"]

logger = logging.getLogger("modalkit_queue")

_CLOSE_RESERVE_SECONDS = 1.0
"""The most of a close budget kept back for spilling to the dead-letter file and closing the backend."""

EventKind = Literal["delivered", "retry", "dead_lettered", "dead_letter_failed"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a message is retried before it is dead-lettered.

    A message is dead-lettered when either budget is spent: ``max_attempts`` attempts, or ``max_elapsed_seconds``
    since it was submitted (no retry is scheduled to start after that).

    Attributes:
        max_attempts: Delivery attempts in all (1 means no retry).
        initial_backoff_seconds: Wait after the first failure; doubled after each further one.
        max_backoff_seconds: Upper bound on a wait.
        jitter: Full jitter: each wait is uniform in ``[0, backoff]``, so many senders do not retry in lockstep.
        max_elapsed_seconds: The most time a message is retried for (``None``: the attempts alone decide).
    """

    max_attempts: int = 5
    initial_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 10.0
    jitter: bool = True
    max_elapsed_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise QueueConfigError(f"retry.max_attempts must be >= 1 (got {self.max_attempts})")
        if self.max_elapsed_seconds is not None and self.max_elapsed_seconds < 0:
            raise QueueConfigError(f"retry.max_elapsed_seconds must be >= 0 (got {self.max_elapsed_seconds})")
        if self.initial_backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise QueueConfigError("retry.initial_backoff_seconds and retry.max_backoff_seconds must be >= 0")

    @classmethod
    def from_config(cls, retry: RetryConfig) -> RetryPolicy:
        """The policy for ``app_settings.queue_config.retry``."""
        return cls(
            retry.max_attempts,
            retry.initial_backoff_seconds,
            retry.max_backoff_seconds,
            retry.jitter,
            retry.max_elapsed_seconds,
        )

    def backoff(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts (1 for the first failure)."""
        exponent = max(failures - 1, 0)
        # Cap the exponent so a long retry budget cannot overflow the float.
        base = min(self.max_backoff_seconds, self.initial_backoff_seconds * 2.0 ** min(exponent, 60))
        if not self.jitter:
            return base
        return rng.uniform(0.0, base) if rng is not None else random.uniform(0.0, base)


@dataclass(frozen=True)
class DeliveryEvent:
    """What happened to one result, passed to ``on_event`` (for metrics) from the sender's thread.

    Attributes:
        kind: ``delivered``; ``retry`` (an attempt failed, another is scheduled); ``dead_lettered`` (every
            attempt failed, the message went to the dead-letter queue or file); ``dead_letter_failed`` (even
            the dead-letter file could not be written: the message is in the ERROR log line and nowhere else).
        queue_name: The queue the result was for.
        job_id: The async job's id.
        attempts: Attempts made so far.
        error: The last error, for ``retry`` and the dead-letter kinds.
        target: Where a dead-lettered message went: ``queue:<name>`` or ``file:<path>``.
    """

    kind: EventKind
    queue_name: str
    job_id: str
    attempts: int
    error: str | None = None
    target: str | None = None


@dataclass(eq=False)
class _Item:
    queue_name: str
    message: str
    job_id: str
    attempts: int = 0
    submitted: float = field(default_factory=time.monotonic)
    # Set after a whole batch failed: retried alone so one poison message cannot sink its neighbours.
    solo: bool = False
    last_error: str | None = field(default=None)


class ReliableSender:
    """Delivers results to a :class:`QueueBackend` at least once, from sync or async code.

    The sender owns a daemon thread running its own event loop, so :meth:`submit` works the same from a
    Modal batched method (sync), a worker thread, or an async handler: it only places the message in a
    bounded in-memory outbox and returns. Delivery happens in the background, batched per queue where the
    backend supports it (``send_batch``). A failed attempt is retried with exponential backoff and jitter;
    after ``retry.max_attempts`` the message goes to the dead-letter queue, or, when there is none or it is
    unreachable, to a local JSON-lines file, with an ERROR log line and a ``dead_lettered`` event.

    **At-least-once**: an attempt whose reply was lost is retried, so a consumer can see a message twice.
    Every message carries its job id (``job_id`` in the JSON, see :func:`~modalkit_queue.result_message`):
    consumers drop duplicates by it. No accepted message is dropped silently: it is delivered, dead-lettered,
    or (if :meth:`close` times out) written to the dead-letter file.

    Thread-safety: :meth:`submit`, :meth:`has_capacity`, :attr:`pending`, :meth:`flush` and :meth:`close` may be
    called from any thread. ``on_event`` runs on the sender's thread and must be quick (a metric increment).

    Args:
        backend: Where messages go. The sender closes it in :meth:`close`.
        retry: Retry policy (default :class:`RetryPolicy`).
        outbox_size: Most messages waiting (including those between retries); :meth:`submit` raises
            :class:`~modalkit_queue.errors.OutboxFullError` beyond it.
        dead_letter_queue: Queue on the same backend for messages that exhausted their retries.
        dead_letter_file: JSON-lines file used when no dead-letter queue is set or it fails; ``None`` leaves
            only the ERROR log line (which carries the message).
        on_event: Called with a :class:`DeliveryEvent` for every delivery, retry and dead letter.
        concurrency: Deliveries in flight at once.
        max_batch_size: Most messages per ``send_batch`` call (SQS takes 10).
        attempt_timeout: Seconds one backend call may take before it counts as a failed attempt (``None``:
            no limit). It keeps a hung connection from stalling a worker for good.
        exit_timeout: If the process exits while the sender is still running, an ``atexit`` hook closes it
            with this timeout, so pending results are delivered or written to the dead-letter file rather than
            lost with the thread (``None`` disables the hook).
        rng: Random source for jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        backend: QueueBackend,
        *,
        retry: RetryPolicy | None = None,
        outbox_size: int = 10_000,
        dead_letter_queue: str | None = None,
        dead_letter_file: str | os.PathLike[str] | None = "modalkit-dead-letters.jsonl",
        on_event: Callable[[DeliveryEvent], None] | None = None,
        concurrency: int = 4,
        max_batch_size: int = 10,
        attempt_timeout: float | None = 30.0,
        exit_timeout: float | None = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if outbox_size < 1:
            raise QueueConfigError(f"outbox_size must be >= 1 (got {outbox_size})")
        if concurrency < 1 or max_batch_size < 1:
            raise QueueConfigError("concurrency and max_batch_size must be >= 1")
        self.backend = backend
        self.retry = retry or RetryPolicy()
        self.outbox_size = outbox_size
        self.dead_letter_queue = dead_letter_queue
        self.dead_letter_file = Path(dead_letter_file) if dead_letter_file is not None else None
        self._on_event = on_event
        self._concurrency = concurrency
        self._max_batch = max_batch_size if isinstance(backend, BatchQueueBackend) else 1
        self._rng = rng or random.Random()
        self._attempt_timeout = attempt_timeout
        self._exit_timeout = exit_timeout

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        # Messages pending per job id, for `wait_for_jobs` (a job may have more than one in flight).
        self._pending_jobs: dict[str, int] = {}
        self._job_waiters = 0
        # Handed over by submit() under the lock, moved onto the loop's queue by _accept().
        self._inbox: list[_Item] = []
        self._wake_scheduled = False
        self._state: Literal["new", "running", "closing", "closed"] = "new"
        self._file_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Touched only on the sender's loop thread.
        self._queue: asyncio.Queue[_Item] | None = None
        self._live: set[_Item] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._workers: list[asyncio.Task[None]] = []

    @classmethod
    def from_config(
        cls,
        queue_config: QueueConfig,
        *,
        backend: QueueBackend | None = None,
        on_event: Callable[[DeliveryEvent], None] | None = None,
    ) -> ReliableSender:
        """A sender set up from ``app_settings.queue_config`` (backend built by :func:`create_backend` if not given)."""
        if backend is None:
            backend = create_backend(queue_config)
        return cls(
            backend,
            retry=RetryPolicy.from_config(queue_config.retry),
            outbox_size=queue_config.outbox_size,
            dead_letter_queue=queue_config.dead_letter.queue,
            dead_letter_file=queue_config.dead_letter.file,
            on_event=on_event,
        )

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the delivery thread (idempotent). Returns the sender, so ``sender = ReliableSender(b).start()``."""
        with self._lock:
            if self._state == "running":
                return self
            if self._state != "new":
                raise SenderClosedError("this ReliableSender was closed; create a new one")
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(ready,), name="modalkit-queue-sender", daemon=True)
            self._thread.start()
            ready.wait()
            self._state = "running"
        if self._exit_timeout is not None:
            atexit.register(self._close_at_exit)
        return self

    def _close_at_exit(self) -> None:
        if self.pending:
            logger.warning("process exiting with %d result(s) still pending delivery; draining", self.pending)
        self.close(self._exit_timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._queue = asyncio.Queue()
        self._workers = [loop.create_task(self._worker()) for _ in range(self._concurrency)]
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop accepting results, deliver what is pending, close the backend and stop the thread.

        Ends within ``timeout`` seconds (``None``: no limit), the dead-lettering and the backend's close
        included: it waits for every pending message to be delivered or dead-lettered until shortly before
        the budget runs out, then writes what is still pending to the dead-letter file (an in-flight one may
        also arrive: at-least-once), and leaves behind a backend call or close still hung after that.
        Idempotent; safe from any thread except the sender's own.

        Returns:
            ``True`` if everything pending was delivered or dead-lettered in time.
        """
        with self._lock:
            if self._state == "new":
                self._state = "closed"
                return True
            if self._state in ("closing", "closed"):
                state_was_running = False
            else:
                self._state = "closing"
                state_was_running = True
        if not state_was_running:
            if self._thread is not None:
                self._thread.join()
            return True
        started = time.monotonic()
        # Part of the budget is kept for what follows the wait (spilling to the file, closing the backend), so
        # the whole close, not only the wait, ends within ``timeout``.
        reserve = 0.0 if timeout is None else min(_CLOSE_RESERVE_SECONDS, timeout * 0.2)
        drained = self.flush(None if timeout is None else max(0.0, timeout - reserve))
        loop = self._loop
        assert loop is not None
        if not drained:
            spilled = asyncio.run_coroutine_threadsafe(self._abandon(), loop).result()
            logger.error(
                "queue sender closed with %d undelivered result(s); written to the dead-letter file %s",
                spilled,
                self.dead_letter_file,
            )

        def left() -> float | None:
            # At least a moment, for a backend whose close is quick; a hung one is abandoned after it.
            return None if timeout is None else max(0.2, started + timeout - time.monotonic())

        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=left())
        except TimeoutError:
            logger.error("closing the queue backend did not finish within the close budget; left behind")
        except Exception:
            logger.exception("closing the queue backend failed")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(left())
        with self._lock:
            self._state = "closed"
        atexit.unregister(self._close_at_exit)
        return drained

    async def _shutdown(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self.backend.close()

    async def _abandon(self) -> int:
        """Stop delivering and write every message not yet finished to the dead-letter file."""
        self._accept()  # results still in the hand-over list count too
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        items = list(self._live)
        await self._spill(items)
        return len(items)

    async def _spill(self, items: Sequence[_Item]) -> None:
        """Dead-letter many messages at once into the file: one write and one fsync, not one per message."""
        if not items:
            return
        records = [
            self._record(item, f"shutdown: {item.last_error or 'not delivered before the sender was closed'}")
            for item in items
        ]
        path = self.dead_letter_file
        try:
            if path is None:
                raise OSError("no dead-letter file is configured")
            await asyncio.to_thread(self._append_all, path, records)
        except OSError:
            for item, record in zip(items, records, strict=True):
                await self._to_file(item, str(record["error"]))  # one by one, each logged where it fails
            return
        for item, record in zip(items, records, strict=True):
            self._emit(
                DeliveryEvent(
                    "dead_lettered", item.queue_name, item.job_id, item.attempts, str(record["error"]), f"file:{path}"
                )
            )
            self._finish(item)

    # -- producer side (any thread) ---------------------------------------------------------------------------

    def submit(self, queue_name: str, message: str, job_id: str) -> None:
        """Queue ``message`` for delivery to ``queue_name`` and return at once (thread-safe, never blocks).

        Args:
            queue_name: Target queue (an SQS queue name, a taskiq task name, a memory queue).
            message: JSON text that carries ``job_id`` (see :func:`~modalkit_queue.result_message`).
            job_id: The async job's id, for logs, events and the dead letter.

        Raises:
            OutboxFullError: ``outbox_size`` messages are already waiting; the caller should shed load (503).
            SenderClosedError: :meth:`start` was not called, or :meth:`close` was.
            TypeError: An argument is not a non-empty string.
        """
        for name, value in (("queue_name", queue_name), ("message", message), ("job_id", job_id)):
            if not isinstance(value, str) or (name != "message" and not value):
                raise TypeError(f"ReliableSender.submit: {name} must be a non-empty string (got {value!r})")
        item = _Item(queue_name, message, job_id)
        with self._lock:
            if self._state != "running":
                raise SenderClosedError(
                    "ReliableSender.submit: the sender is not running "
                    "(call start() first; a sender cannot be reused after close())"
                )
            if self._pending >= self.outbox_size:
                raise OutboxFullError(self.outbox_size)
            self._pending += 1
            self._pending_jobs[job_id] = self._pending_jobs.get(job_id, 0) + 1
            self._inbox.append(item)
            # One wake-up per burst: a self-pipe write and a loop wake-up per message would cost more than
            # the rest of the hand-over put together.
            wake = not self._wake_scheduled
            self._wake_scheduled = True
            loop = self._loop
        if wake:
            assert loop is not None
            loop.call_soon_threadsafe(self._accept)

    def has_capacity(self, n: int = 1) -> bool:
        """Whether ``n`` more results fit in the outbox right now (a hint: another thread may take the room)."""
        with self._lock:
            return self._state == "running" and self._pending + n <= self.outbox_size

    @property
    def pending(self) -> int:
        """Messages accepted but not yet delivered or dead-lettered (the outbox depth)."""
        with self._lock:
            return self._pending

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted message is delivered or dead-lettered; ``True`` if that happened in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def wait_for_jobs(self, job_ids: Iterable[str], timeout: float | None = None) -> set[str]:
        """Wait until every message of these jobs is delivered or dead-lettered (others may still be pending).

        Where the process may vanish without running its exit hooks (a Modal container that is lost), a caller
        waits here before it reports the jobs as done, so nothing it reported lives only in this outbox.

        Returns:
            The job ids still pending when ``timeout`` ran out (empty: all of them are settled).
        """
        wanted = set(job_ids)
        with self._idle:
            self._job_waiters += 1
            try:
                self._idle.wait_for(lambda: wanted.isdisjoint(self._pending_jobs), timeout)
                return wanted.intersection(self._pending_jobs)
            finally:
                self._job_waiters -= 1

    # -- delivery side (the sender's loop thread) -------------------------------------------------------------

    def _accept(self) -> None:
        assert self._queue is not None
        with self._lock:
            items, self._inbox = self._inbox, []
            self._wake_scheduled = False
        self._live.update(items)
        for item in items:
            self._queue.put_nowait(item)

    def _finish(self, item: _Item) -> None:
        self._live.discard(item)
        with self._idle:
            self._pending -= 1
            left = self._pending_jobs.pop(item.job_id, 1) - 1
            if left:
                self._pending_jobs[item.job_id] = left
            if self._pending == 0 or (not left and self._job_waiters):
                self._idle.notify_all()

    def _emit(self, event: DeliveryEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            logger.exception("queue sender on_event callback failed (event %s for job %s)", event.kind, event.job_id)

    async def _worker(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            first = await queue.get()
            taken = [first]
            while len(taken) < self._max_batch and not queue.empty():
                taken.append(queue.get_nowait())
            groups: dict[str, list[_Item]] = {}
            singles: list[_Item] = []
            for item in taken:
                if item.solo or self._max_batch == 1:
                    singles.append(item)
                else:
                    groups.setdefault(item.queue_name, []).append(item)
            for item in singles:
                await self._deliver([item])
            for items in groups.values():
                await self._deliver(items)

    async def _deliver(self, items: Sequence[_Item]) -> None:
        queue_name = items[0].queue_name
        for item in items:
            item.attempts += 1
        try:
            if len(items) == 1:
                call = self.backend.send(queue_name, items[0].message)
            else:
                assert isinstance(self.backend, BatchQueueBackend)
                call = self.backend.send_batch(queue_name, [item.message for item in items])
            await asyncio.wait_for(call, self._attempt_timeout)
        except asyncio.CancelledError:
            raise
        except BatchDeliveryError as exc:
            for index, item in enumerate(items):
                failure = exc.failures.get(index)
                if failure is None:
                    self._delivered(item)
                else:
                    await self._failed(item, failure)
            return
        except Exception as exc:
            for item in items:
                item.solo = len(items) > 1 or item.solo
                await self._failed(item, exc)
            return
        for item in items:
            self._delivered(item)

    def _delivered(self, item: _Item) -> None:
        self._emit(DeliveryEvent("delivered", item.queue_name, item.job_id, item.attempts))
        self._finish(item)

    async def _failed(self, item: _Item, exc: BaseException) -> None:
        detail = str(exc) or (
            f"no reply within {self._attempt_timeout}s" if isinstance(exc, TimeoutError) else "no detail"
        )
        error = f"{type(exc).__name__}: {detail}"
        item.last_error = error
        delay = self.retry.backoff(item.attempts, self._rng)
        budget = self.retry.max_elapsed_seconds
        in_time = budget is None or time.monotonic() + delay - item.submitted <= budget
        if item.attempts < self.retry.max_attempts and in_time:
            logger.info(
                "delivery of job %s to queue %r failed (attempt %d of at most %d), retrying in %.3fs: %s",
                item.job_id,
                item.queue_name,
                item.attempts,
                self.retry.max_attempts,
                delay,
                error,
            )
            self._emit(DeliveryEvent("retry", item.queue_name, item.job_id, item.attempts, error))
            loop = asyncio.get_running_loop()
            timer: asyncio.TimerHandle | None = None

            def requeue() -> None:
                assert self._queue is not None
                if timer is not None:
                    self._timers.discard(timer)
                self._queue.put_nowait(item)

            timer = loop.call_later(delay, requeue)
            self._timers.add(timer)
            return
        await self._dead_letter(item, error)

    async def _dead_letter(self, item: _Item, error: str) -> None:
        dlq = self.dead_letter_queue
        if dlq and dlq != item.queue_name:
            try:
                envelope = json.dumps(self._record(item, error), ensure_ascii=False)
                await asyncio.wait_for(self.backend.send(dlq, envelope), self._attempt_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{error}; dead-letter queue {dlq!r} failed too: {type(exc).__name__}: {exc}"
            else:
                logger.error(
                    "job %s: gave up on queue %r after %d attempts (%s); sent to dead-letter queue %r",
                    item.job_id,
                    item.queue_name,
                    item.attempts,
                    error,
                    dlq,
                )
                self._emit(
                    DeliveryEvent("dead_lettered", item.queue_name, item.job_id, item.attempts, error, f"queue:{dlq}")
                )
                self._finish(item)
                return
        await self._to_file(item, error)

    async def _to_file(self, item: _Item, error: str) -> None:
        record = self._record(item, error)
        path = self.dead_letter_file
        try:
            if path is None:
                raise OSError("no dead-letter file is configured")
            await asyncio.to_thread(self._append, path, record)
        except OSError as exc:
            # The last place the message can survive is the log line itself.
            logger.error(
                "job %s: could not dead-letter the result for queue %r (%s; writing %s failed: %s); message: %s",
                item.job_id,
                item.queue_name,
                error,
                path,
                exc,
                item.message,
            )
            self._emit(DeliveryEvent("dead_letter_failed", item.queue_name, item.job_id, item.attempts, error))
        else:
            logger.error(
                "job %s: gave up on queue %r after %d attempts (%s); written to dead-letter file %s",
                item.job_id,
                item.queue_name,
                item.attempts,
                error,
                path,
            )
            self._emit(
                DeliveryEvent("dead_lettered", item.queue_name, item.job_id, item.attempts, error, f"file:{path}")
            )
        self._finish(item)

    @staticmethod
    def _record(item: _Item, error: str) -> dict[str, object]:
        return {
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "job_id": item.job_id,
            "queue": item.queue_name,
            "attempts": item.attempts,
            "error": error,
            "message": item.message,
        }

    def _append(self, path: Path, record: dict[str, object]) -> None:
        self._append_all(path, [record])

    def _append_all(self, path: Path, records: Sequence[dict[str, object]]) -> None:
        line = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        with self._file_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
