"""Batcher: ``@modal.batched(max_batch_size, wait_ms)`` semantics on one machine.

Callers on the event loop submit single items; one thread per model takes them in batches of up to
``max_batch_size`` and runs them through the `Worker`, one batch at a time (like one GPU). Results come back
to the loop with one ``call_soon_threadsafe`` per batch, so the cost of crossing threads is paid per batch,
not per item.

When does a batch start? When the model is idle, the items that arrived in the current turn of the event loop
are ready (a burst of concurrent requests lands in one batch). While the model is busy, items accumulate. Then
the batch thread asks its `HoldPolicy` (``hold=``) whether to start now: a lone request never waits for
company, but when the callers the last batch answered are about to send again, the thread holds the batch
briefly (never longer than ``wait_ms``, nor a fraction of the batch's cost) so they land in it instead of
splitting the batches in two. ``hold=None`` always starts at once.

Inline batches for a model known to be fast. Handing a batch to the thread and its results back costs two
cross-thread wake-ups (tens of microseconds each), which for a model that runs in microseconds is most of the
cost of a lone request. So when the model is idle (no batch running, the thread asleep) and its `InlinePolicy`
allows it, the ready items run right there on the event loop instead:

- The policy (``inline=``, see `modalkit_serve._scheduling`) says whether the model is known to be fast (by
  default: its last 16 batches each ran in under 150 us) and holds the guard: an inline batch that takes
  longer than 2 ms turns inline running off for 10 minutes (doubling each time it happens again); the batcher
  logs it at INFO the first time. So the event loop stalls at most once in a long while, and only as long as
  that one batch; any model that takes real time runs on the thread and the loop keeps accepting requests
  while it computes. ``inline=None`` turns inline running off.
- Never while the batcher is closing (the drain runs on the thread) or after a fatal error. One batch at a
  time still holds: the thread and the loop both take a batch only while holding ``_batch_lock``, and the loop
  only tries it without blocking. Async jobs, the observer and the queue wait are the same code either way,
  and so are timeouts: a caller whose deadline passed while an inline batch held the loop gets its timeout
  before the results are handed out, as the sweep would have given it during a batch on the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from modalkit_pipeline import ItemError
from modalkit_serve._jobs import Job
from modalkit_serve._scheduling import HoldPolicy, InlinePolicy
from modalkit_serve._streams import SlowReaderError, StreamItem
from modalkit_serve._worker import Worker, attach_meta
from modalkit_serve.errors import NotReadyError, QueueFullError, RequestTimeoutError

__all__ = ["BatchItem", "BatchObserver", "Batcher", "StreamObserver"]

logger = logging.getLogger("modalkit.batcher")

BatchObserver = Callable[[str, int, float, float], object]
"""Called on the event loop after each batch with (model_name, batch size, oldest item's wait s, run time s)."""
StreamObserver = Callable[[str, int, str | None], object]
"""Called on the event loop with (model_name, chunks just handed over, outcome when a stream ended or None);
outcomes: ``done``, ``error``, ``cancelled``, ``timeout``, ``slow_reader``."""

MAX_STREAM_BATCHES = 2
"""Stream batches running at once, taking model calls in turn: a stream that arrives while one batch streams
starts with the next step instead of waiting for that whole batch to finish."""


class BatchItem:
    """One queued input. After it ran, ``batch_size`` and ``queue_wait`` say how (for the access log)."""

    __slots__ = ("batch_size", "deadline", "future", "index", "job", "message", "queue_wait", "submitted")

    def __init__(
        self, message: BaseModel, future: asyncio.Future[BaseModel] | None, submitted: float, index: int = 0
    ) -> None:
        self.message = message
        self.index = index  # the item's position in its caller's request (what an ItemError reports)
        self.future = future
        self.submitted = submitted
        self.deadline = 0.0
        self.job: Job | None = None
        self.batch_size = 0
        self.queue_wait = 0.0


class Batcher:
    """Groups single items into batches for one model and runs them off the event loop.

    Create it, then call `start` from the event loop that will submit to it.

    Args:
        worker: Runs each batch.
        max_batch_size: The most items in one batch.
        wait_ms: The most an idle model holds a batch for batch-mates (see the module docstring and `hold`).
        max_queue_size: The most items waiting (not yet in a batch); beyond it `submit` raises `QueueFullError`.
        timeout_seconds: A sync item not answered within this gets `RequestTimeoutError` (async jobs never
            time out: they were accepted and are always run and delivered).
        model_name: For logs and metrics.
        on_batch: Called on the event loop after each batch (see `BatchObserver`).
        on_job_done: Called on the event loop with each finished async job and its result.
        on_jobs_running: Called with a batch's async jobs as it starts, on the thread that runs it.
        on_jobs_finished: Called with a batch's async jobs and their results on the thread that ran it, before
            the results go to the sender: what it records (the job's status, the journal) is never behind what
            a consumer of the queue already has.
        inline: When an idle model's batch may run on the event loop (see the module docstring); None never.
        hold: Whether an idle model holds a batch for more items (see the module docstring); None never.
        stream_buffer: The most chunks a stream holds unread before its batch pauses (backpressure).
        on_stream: Called on the event loop as streams advance and end (see `StreamObserver`).
    """

    def __init__(
        self,
        worker: Worker,
        *,
        max_batch_size: int,
        wait_ms: float,
        max_queue_size: int,
        timeout_seconds: float,
        model_name: str = "model",
        on_batch: BatchObserver | None = None,
        on_job_done: Callable[[Job, BaseModel], object] | None = None,
        on_jobs_running: Callable[[list[Job]], object] | None = None,
        on_jobs_finished: Callable[[list[tuple[Job, BaseModel]]], object] | None = None,
        inline: InlinePolicy | None = None,
        hold: HoldPolicy | None = None,
        stream_buffer: int = 64,
        on_stream: StreamObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or timeout_seconds <= 0:
            raise ValueError("max_batch_size and max_queue_size must be >= 1 and timeout_seconds > 0")
        self.worker = worker
        self.max_batch_size = max_batch_size
        self.wait_ms = wait_ms
        self.max_queue_size = max_queue_size
        self.timeout_seconds = timeout_seconds
        self.model_name = model_name
        self.on_batch = on_batch
        self.on_job_done = on_job_done
        self.on_jobs_running = on_jobs_running
        self.on_jobs_finished = on_jobs_finished
        self._queue: deque[BatchItem] = deque()
        # Sync items in submission order; with one timeout for all, also deadline order (see _sweep).
        self._pending: deque[BatchItem] = deque()
        # The batch thread sleeps on this lock (held while it sleeps; released to wake it): a C-level lock is
        # much cheaper to signal than a threading.Event. `_idle` says the thread is (about to be) asleep.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._idle = False
        # While the thread holds a batch (see `hold`), arrivals wake it only once this many items are queued: each
        # wake-up takes the GIL from the loop that is reading the very requests the hold waits for.
        self._wake_at = 1
        self.wakeups = 0
        """How often the loop woke the batch thread (a test and profiling figure)."""
        self._kick_scheduled = False
        self._closing = False
        self._accepting = False
        self._running_batch = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._exited: asyncio.Future[None] | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = max(0.005, min(0.1, timeout_seconds / 10))
        self.inline = inline
        self.hold = hold
        # Held by whoever takes and runs a batch: the batch thread, or the loop for an inline batch. The policy
        # is only recorded into under it, so one thread at a time.
        self._batch_lock = threading.Lock()
        # Streams: waiting ones (loop appends, thread pops), every unfinished one (loop only), and the batches
        # being streamed (thread only).
        self.stream_buffer = max(1, stream_buffer)
        self.on_stream = on_stream
        self.stall_seconds = min(10.0, timeout_seconds / 2)
        self._stream_queue: deque[StreamItem] = deque()
        self._live_streams: set[StreamItem] = set()
        self._stream_batches: list[_StreamBatch] = []

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the batch thread. Call from the event loop that will submit items."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._exited = self._loop.create_future()
        self._accepting = True
        self._thread = threading.Thread(target=self._thread_main, name=f"modalkit-batch-{self.model_name}", daemon=True)
        self._thread.start()
        self._sweeper = self._loop.call_later(self._sweep_every, self._sweep)

    async def close(self, grace_seconds: float | None = None) -> bool:
        """Stop accepting items, finish every queued and running batch, stop the thread.

        Args:
            grace_seconds: The most seconds to wait; None waits as long as it takes.

        Returns:
            True when everything queued was run; False when the grace period expired first (the rest is logged).
        """
        self._accepting = False
        if self._thread is None or self._exited is None:
            return True
        self._closing = True
        self._wake_thread()
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), grace_seconds)
        except TimeoutError:
            logger.error(
                "model %s: %d queued items and a running batch were not finished within %.1fs of shutdown",
                self.model_name,
                len(self._queue),
                grace_seconds or 0.0,
            )
            return False
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
        return True

    @property
    def depth(self) -> int:
        """Items and streams waiting for a batch (not counting the ones running)."""
        return len(self._queue) + len(self._stream_queue)

    @property
    def in_flight(self) -> int:
        """Items waiting plus items in the running batch, plus unfinished streams."""
        return len(self._queue) + self._running_batch + len(self._live_streams)

    @property
    def streams(self) -> int:
        """Unfinished streams: waiting for a batch or streaming (a cancelled one leaves at once)."""
        return len(self._live_streams)

    # -- submitting (event loop thread) ----------------------------------------------------------------------

    def submit(self, message: BaseModel) -> BatchItem:
        """Queue one sync input; await ``item.future`` for its result.

        Raises:
            NotReadyError: the batcher is closing or its worker stopped after a fatal error.
            QueueFullError: ``max_queue_size`` items are already waiting.
        """
        self.check_room(1)
        return self._enqueue(message)

    def submit_many(self, messages: Sequence[BaseModel]) -> list[BatchItem]:
        """Queue several sync inputs, all or none.

        Raises:
            NotReadyError: as for `submit`.
            QueueFullError: they do not all fit.
        """
        self.check_room(len(messages))
        return [self._enqueue(m, i) for i, m in enumerate(messages)]

    def submit_job(self, job: Job, *, room_checked: bool = False) -> None:
        """Queue an accepted async job; `on_job_done` gets its result. Never times out.

        Args:
            job: The job.
            room_checked: The caller made sure of room with `check_room` before it accepted the job (and then
                wrote it to the journal): it is queued even if sync requests have taken that room meanwhile.

        Raises:
            NotReadyError: as for `submit`.
            QueueFullError: as for `submit` (not with ``room_checked``).
        """
        self.check_room(0 if room_checked else 1)
        item = BatchItem(job.request.message, None, time.perf_counter())
        item.job = job
        self._queue.append(item)
        self._kick()

    def submit_stream(self, message: BaseModel) -> StreamItem:
        """Queue one input to stream; iterate the returned item for its chunks, ``aclose`` it to cancel.

        Raises:
            NotReadyError: as for `submit`.
            QueueFullError: as for `submit`.
        """
        self.check_room(1)
        now = time.perf_counter()
        item = StreamItem(
            message, now, on_read=self._stream_read, on_cancel=self._stream_cancelled, limit=self.stream_buffer
        )
        item.deadline = now + self.timeout_seconds
        self._stream_queue.append(item)
        self._live_streams.add(item)
        self._kick()
        return item

    async def result(self, item: BatchItem) -> BaseModel:
        """Wait for a submitted item's result.

        Raises:
            RequestTimeoutError: it was not answered within ``timeout_seconds``.
        """
        assert item.future is not None
        return await item.future

    def check_room(self, n: int) -> None:
        """Raise unless ``n`` more items can be queued now (``n=0``: only whether the batcher takes work at all).

        Raises:
            NotReadyError: the batcher is closing or its worker stopped after a fatal error.
            QueueFullError: ``n`` more items would exceed ``max_queue_size``.
        """
        if not self._accepting:
            raise NotReadyError(f"model {self.model_name} is not accepting requests (starting or shutting down)")
        if not self.worker.ready:
            raise NotReadyError(f"model {self.model_name} stopped after a fatal error")
        queued = len(self._queue) + len(self._stream_queue)
        if n and queued + n > self.max_queue_size:
            raise QueueFullError(
                f"model {self.model_name} has {queued} requests queued (limit {self.max_queue_size}); retry later"
            )

    def _enqueue(self, message: BaseModel, index: int = 0) -> BatchItem:
        assert self._loop is not None
        now = time.perf_counter()
        item = BatchItem(message, self._loop.create_future(), now, index)
        item.deadline = now + self.timeout_seconds
        self._queue.append(item)
        self._pending.append(item)
        self._kick()
        return item

    def _kick(self) -> None:
        # Wake an idle thread at the end of this turn of the loop, not now: the other requests that arrived in
        # the same turn then land in the same batch. A busy thread (event set) needs no wake-up.
        if self._idle and not self._kick_scheduled and (len(self._queue) >= self._wake_at or self._stream_queue):
            self._kick_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        # Run the ready items inline when the model is idle and known to be fast; otherwise wake the thread.
        self._kick_scheduled = False
        if self._idle and not self._stream_queue and self._inline_ok() and self._batch_lock.acquire(blocking=False):
            try:
                # `_idle` is read again under the lock: the thread may have seen the items first (then it has
                # cleared `_idle`, waits for the lock, and finds the queue empty or finishes what is left).
                batch = self._take() if self._idle else []
                if batch:
                    results, started, finished = self._execute(batch)
                    self._observe(len(batch), finished - started, inline=True)
                    # The sweep could not run while the loop was busy: callers past their deadline get the
                    # timeout they would have got had the batch run on the thread.
                    self._expire(finished)
                    self._complete(batch, results, started, finished)
            finally:
                self._batch_lock.release()
            if self._queue:  # more than one batch was waiting: the next turn of the loop handles the rest
                self._kick()
            return
        self._wake_thread()

    def _inline_ok(self) -> bool:
        policy = self.inline
        return policy is not None and not self._closing and self.worker.ready and policy.allows()

    def _observe(self, size: int, seconds: float, *, inline: bool) -> None:
        # Called by whichever thread ran the batch; both run one at a time under _batch_lock.
        if self.hold is not None:
            self.hold.record(size, queued=len(self._queue), seconds=seconds)
        policy = self.inline
        if policy is not None and policy.record(seconds, inline=inline):
            (logger.info if policy.trips == 1 else logger.debug)(
                "model %s: a batch run on the event loop took %.1f ms (limit %.1f ms); its batches run on the "
                "batch thread for the next %.0f s",
                self.model_name,
                seconds * 1000,
                policy.limit_seconds * 1000,
                policy.backoff_seconds,
            )

    def _wake_thread(self) -> None:
        self._kick_scheduled = False
        if self._idle:
            self._idle = False
            self.wakeups += 1
            with contextlib.suppress(RuntimeError):  # already released: a wake-up is pending anyway
                self._wake.release()

    def _sweep(self) -> None:
        """Fail sync items past their deadline; runs on the loop every few ms to tens of ms."""
        now = time.perf_counter()
        self._expire(now)
        if self._live_streams:
            self._expire_streams(now)
        if self._loop is not None and not (self._closing and self._exited is not None and self._exited.done()):
            self._sweeper = self._loop.call_later(self._sweep_every, self._sweep)

    def _expire(self, now: float) -> None:
        pending = self._pending
        while pending:
            item = pending[0]
            future = item.future
            if future is None or future.done():
                pending.popleft()
            elif item.deadline <= now:
                pending.popleft()
                future.set_exception(
                    RequestTimeoutError(
                        f"model {self.model_name} did not answer within {self.timeout_seconds:g}s "
                        "(server_config.request_timeout_seconds)"
                    )
                )
            else:
                break

    def _expire_streams(self, now: float) -> None:
        # A stream times out before its first chunk like a sync request, and later when no chunk comes for as
        # long (a reader with chunks still unread is not waiting for the model).
        timed_out = [
            s
            for s in self._live_streams
            if not s.unread and (s.deadline <= now if s.batch_size == 0 else now - s.last_event >= self.timeout_seconds)
        ]
        for stream in timed_out:
            stream.fail(
                RequestTimeoutError(
                    f"model {self.model_name} sent no chunk within {self.timeout_seconds:g}s "
                    "(server_config.request_timeout_seconds)"
                )
            )
            self._stream_ended(stream, "timeout")
        if timed_out:
            self._wake_thread()

    def _stream_read(self, stream: StreamItem) -> None:
        self._wake_thread()  # its batch may have paused for this reader

    def _stream_cancelled(self, stream: StreamItem) -> None:
        self._stream_ended(stream, "cancelled")
        self._wake_thread()  # the model learns it at its next step, even when the batch was paused

    def _stream_ended(self, stream: StreamItem, outcome: str) -> None:
        self._live_streams.discard(stream)
        if self.on_stream is not None:
            self.on_stream(self.model_name, 0, outcome)

    def _deliver_stream_step(self, pairs: list[tuple[StreamItem, Any]]) -> None:
        """Hand one model step's events to their streams (on the loop)."""
        now = time.perf_counter()
        chunks = 0
        for stream, event in pairs:
            if stream.push(event, now):
                if isinstance(event, SlowReaderError):
                    outcome = "slow_reader"
                elif event is None:
                    outcome = "done"
                else:
                    outcome = "error"
                self._stream_ended(stream, outcome)
            elif isinstance(event, BaseModel):
                chunks += 1
        if chunks and self.on_stream is not None:
            self.on_stream(self.model_name, chunks, None)

    # -- the batch thread ------------------------------------------------------------------------------------

    def _thread_main(self) -> None:
        queue = self._queue
        wake = self._wake
        streams = self._stream_queue
        stream_batches = self._stream_batches
        try:
            while True:
                if streams or stream_batches:
                    # One step of each stream batch, then one batch of sync items if any wait (no hold while
                    # streams run): a long stream never keeps the other routes waiting for its end.
                    progressed = self._stream_round()
                    if queue:
                        with self._batch_lock:
                            batch = self._take()
                            if batch:
                                self._run(batch)
                    elif not progressed:
                        # Every stream batch waits for a slow reader: nap until a read, a cancel or new work.
                        self._idle = True
                        if not (queue or (streams and len(stream_batches) < MAX_STREAM_BATCHES)):
                            wake.acquire(timeout=0.01)
                        self._idle = False
                    continue
                hold = None if self._closing else self.hold
                ready = len(queue)
                # A hold starts as soon as a batch finished, before anything arrived: the callers it answered are
                # expected back, so the thread sleeps until they are all queued (or the bound passed).
                delay = hold.hold(ready) if hold is not None else 0.0
                if ready and delay <= 0.0:
                    with self._batch_lock:
                        batch = self._take()
                        if batch:
                            self._run(batch)
                    continue
                if not ready and self._closing:
                    break
                # Asleep until `_wake_at` items are queued: the ones that end the hold, or (idle) the first one;
                # a stream wakes it at once. An item appended before `_idle` was published did not wake us, hence
                # the re-check after it.
                self._wake_at = hold.wanted if hold is not None and delay > 0.0 else 1
                self._idle = True
                if len(queue) < self._wake_at and not streams and not self._closing:
                    wake.acquire(timeout=delay if delay > 0.0 else -1)  # a spurious wake-up just loops
                self._idle = False
                self._wake_at = 1
        finally:
            self._post(self._thread_exited)

    def _stream_round(self) -> bool:
        """Start a stream batch if there is room, then advance each one a step; False when none could advance."""
        progressed = False
        with self._batch_lock:
            streams = self._stream_queue
            if streams and len(self._stream_batches) < MAX_STREAM_BATCHES:
                taken: list[StreamItem] = []
                while streams and len(taken) < self.max_batch_size:
                    stream = streams.popleft()
                    if not stream.cancelled:
                        taken.append(stream)
                if taken:
                    self._stream_batches.append(_StreamBatch(taken, self.worker))
            for batch in list(self._stream_batches):
                first = not batch.started
                began = time.perf_counter()
                pairs = batch.step(self.stall_seconds, self.model_name)
                if pairs is None:
                    continue  # paused for a slow reader
                progressed = True
                if first and batch.started and self.on_batch is not None:
                    # One observation per stream batch, as per sync batch: its streams, their wait, its first call.
                    wait, run = began - batch.items[0].submitted, time.perf_counter() - began
                    self._post(self.on_batch, self.model_name, len(batch.items), wait, run)
                if pairs:
                    self._post(self._deliver_stream_step, pairs)
                if batch.finished:
                    self._stream_batches.remove(batch)
        return progressed

    def _take(self) -> list[BatchItem]:
        """Pop up to ``max_batch_size`` items to run; call with ``_batch_lock`` held."""
        queue = self._queue
        batch: list[BatchItem] = []
        while queue and len(batch) < self.max_batch_size:
            item = queue.popleft()
            # A sync item whose caller already got a timeout is dropped (reading done() from the batch thread
            # is a plain flag read; at worst an item that timed out a moment ago still runs).
            if item.future is not None and item.future.done():
                continue
            batch.append(item)
        return batch

    def _run(self, batch: list[BatchItem]) -> None:
        results, started, finished = self._execute(batch)
        self._observe(len(batch), finished - started, inline=False)
        self._post(self._complete, batch, results, started, finished)

    def _execute(self, batch: list[BatchItem]) -> tuple[list[BaseModel], float, float]:
        self._running_batch = len(batch)
        started = time.perf_counter()
        messages: list[BaseModel] = []
        indices: list[int] = []
        jobs: list[tuple[int, Job]] = []
        for i, item in enumerate(batch):
            messages.append(item.message)
            indices.append(item.index)
            if item.job is not None:
                item.job.status = "running"
                jobs.append((i, item.job))
        if jobs:
            self._hook(self.on_jobs_running, [job for _, job in jobs])
        try:
            # Async results are handed to the sender below, once `on_jobs_finished` has recorded them.
            results = self.worker.run_messages(messages, None, indices)
        except Exception:
            # run_messages isolates pipeline failures itself; this guards against a bug in the worker.
            logger.exception("model %s: batch of %d failed outside the pipeline", self.model_name, len(batch))
            results = [
                ItemError(error="internal error while running the batch", index=item.index, kind="internal")
                for item in batch
            ]
        if jobs:
            for i, job in jobs:
                attach_meta(job.request, results[i])
            self._hook(self.on_jobs_finished, [(job, results[i]) for i, job in jobs])
            for i, job in jobs:
                self.worker.deliver(job.request, results[i], job.job_id)
        finished = time.perf_counter()
        self._running_batch = 0
        return results, started, finished

    def _hook(self, hook: Callable[[Any], object] | None, arg: object) -> None:
        if hook is None:
            return
        try:
            hook(arg)
        except Exception:  # recording a job's progress must not stop its delivery
            logger.exception("model %s: recording the progress of async jobs failed", self.model_name)

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting for these results any more
            logger.warning("model %s: event loop closed before a batch's results were handed back", self.model_name)

    # -- back on the event loop ------------------------------------------------------------------------------

    def _complete(self, batch: list[BatchItem], results: list[BaseModel], started: float, finished: float) -> None:
        n = len(batch)
        for item, result in zip(batch, results, strict=True):
            item.batch_size = n
            item.queue_wait = started - item.submitted
            future = item.future
            if future is not None:
                if not future.done():
                    future.set_result(result)
            elif item.job is not None and self.on_job_done is not None:
                try:
                    self.on_job_done(item.job, result)
                except Exception:
                    logger.exception("model %s: recording job %s failed", self.model_name, item.job.job_id)
        # Drop answered items from the timeout list now rather than at the next sweep: every object kept alive
        # for 100 ms is promoted by the garbage collector and makes its full collections longer.
        pending = self._pending
        while pending and (pending[0].future is None or pending[0].future.done()):
            pending.popleft()
        if self.on_batch is not None:
            self.on_batch(self.model_name, n, started - batch[0].submitted, finished - started)

    def _thread_exited(self) -> None:
        self._accepting = False
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)


class _StreamBatch:
    """Streams that run as one batch: each step is one model call that advances all of them (batch thread only)."""

    __slots__ = ("finished", "items", "open", "paused_since", "started", "steps", "untold")

    def __init__(self, items: list[StreamItem], worker: Worker) -> None:
        self.items = items
        self.open = set(range(len(items)))
        self.untold: set[int] = set()  # cancelled since the model's last step
        self.started = False
        self.finished = False
        self.paused_since: float | None = None
        now = time.perf_counter()
        for item in items:
            item.batch_size = len(items)
            item.queue_wait = now - item.submitted
        self.steps = worker.stream_steps([item.message for item in items])

    def step(self, stall_seconds: float, model_name: str) -> list[tuple[StreamItem, Any]] | None:
        """Run the next model step; returns its events, or None when paused because a reader is behind."""
        items = self.items
        for i in [i for i in self.open if items[i].cancelled]:
            self.open.discard(i)
            self.untold.add(i)
        pairs: list[tuple[StreamItem, Any]] = []
        behind = [i for i in self.open if items[i].unread >= items[i].limit]
        if behind:
            now = time.perf_counter()
            if self.paused_since is None:
                self.paused_since = now
            if now - self.paused_since < stall_seconds:
                return None
            # Cut off the readers that stayed behind, so that the others' streams go on.
            for i in behind:
                error = SlowReaderError(
                    f"model {model_name}: the client read nothing for {stall_seconds:g}s with "
                    f"{items[i].limit} chunks waiting; the stream was cancelled"
                )
                pairs.append((items[i], error))
                self.open.discard(i)
                self.untold.add(i)
        self.paused_since = None
        if not self.open:
            self._close()
            return pairs
        gone = frozenset(self.untold)
        self.untold.clear()
        try:
            events = self.steps.send(gone) if self.started else next(self.steps)
        except StopIteration:
            events = [(i, None) for i in sorted(self.open)]  # the worker always ends them; this is a safeguard
        self.started = True
        for i, event in events:
            if i not in self.open:
                continue
            stream = items[i]
            if isinstance(event, BaseModel) and not isinstance(event, ItemError):
                stream.posted += 1
            else:
                self.open.discard(i)
            pairs.append((stream, event))
        if not self.open:
            self._close()
        return pairs

    def _close(self) -> None:
        self.finished = True
        self.steps.close()
