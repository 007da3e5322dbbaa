"""Runners: what the HTTP app calls. `LocalRunner` serves every model entry on this machine."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from modalkit_config import Settings
from modalkit_pipeline import AsyncInputModel, InferencePipeline, ItemError, is_failure
from modalkit_queue import DeliveryEvent, QueueBackend, ReliableSender
from modalkit_serve._asgi import RequestInfo
from modalkit_serve._batcher import Batcher, BatchItem
from modalkit_serve._ids import new_job_id
from modalkit_serve._jobs import Job, JobStore, JobView, same_owner
from modalkit_serve._journal import JobJournal, JournalError, JournalRow, JournalState
from modalkit_serve._metrics import ServeMetrics
from modalkit_serve._scheduling import HoldPolicy, InlinePolicy
from modalkit_serve._streams import ChunkStream
from modalkit_serve._worker import Worker, safe_error_message
from modalkit_serve.errors import ModelLoadError, NotReadyError, QueueFullError, UnknownModelError

__all__ = ["LocalRunner", "ManagedRunner", "OutboxSender", "Runner", "StreamingRunner"]

logger = logging.getLogger("modalkit.runner")

_JOURNAL_CLOSE_SECONDS = 0.2
"""Kept back from the drain budget for the journal's last commit."""


@runtime_checkable
class Runner(Protocol):
    """What the HTTP app needs from a runtime: local (`LocalRunner`) or Modal (``modalkit.ModalRunner``).

    Methods raise `modalkit_serve.errors` exceptions (`UnknownModelError`, `NotReadyError`, `QueueFullError`,
    `RequestTimeoutError`), which the app turns into HTTP answers. ``info``, when given, is filled in for the
    access log (model, batch size, queue wait); a runner may leave it alone.
    """

    async def predict(self, model_name: str, item: BaseModel, info: RequestInfo | None = None) -> BaseModel:
        """One input -> its output, or an `ItemError` when the pipeline failed on it."""
        ...

    async def predict_many(
        self, model_name: str, items: Sequence[BaseModel], info: RequestInfo | None = None
    ) -> list[BaseModel]:
        """Several inputs -> one result each, in order; a failing item does not fail the others."""
        ...

    async def submit_async(
        self, model_name: str, request: AsyncInputModel[Any], info: RequestInfo | None = None
    ) -> str:
        """Accept an async request; returns its job id. The result goes to the request's queues."""
        ...

    async def job_status(self, job_id: str, info: RequestInfo | None = None) -> JobView | None:
        """A job's state and result, or None when the id is unknown or the job is not the caller's.

        A job belongs to the caller that submitted it (``info.owner`` at `submit_async`); another caller
        (``info.owner`` here) gets None, exactly as for an unknown id.
        """
        ...


@runtime_checkable
class StreamingRunner(Protocol):
    """A runner that can stream a `StreamingPipeline`'s chunks (``/predict_stream``)."""

    def predict_stream(self, model_name: str, item: BaseModel, info: RequestInfo | None = None) -> ChunkStream:
        """Start streaming one input: its chunks, then maybe one failed result; ``aclose`` cancels it.

        Errors that refuse the request (unknown model, not ready, queue full) are raised here or by the
        stream's first step; a timeout before the first chunk is raised by the first step.
        """
        ...


@runtime_checkable
class ManagedRunner(Protocol):
    """A runner with a lifecycle; the app's lifespan calls `start` and `stop`, ``/ready`` reads `ready`."""

    @property
    def ready(self) -> bool:
        """Whether every model is loaded and serving."""
        ...

    async def start(self) -> None:
        """Begin loading (must return quickly: the server answers /health meanwhile)."""
        ...

    async def stop(self) -> None:
        """Drain: finish in-flight work and deliver every accepted async job."""
        ...


class OutboxSender(Protocol):
    """The parts of `modalkit_queue.ReliableSender` the local runner uses."""

    def submit(self, queue_name: str, message: str, job_id: str) -> None:
        """Queue one message for delivery."""

    def has_capacity(self, n: int = 1) -> bool:
        """Whether ``n`` more messages fit in the outbox."""
        ...

    def close(self, timeout: float | None = 30.0) -> bool:
        """Deliver what is pending (up to ``timeout``) and stop."""
        ...


def configured_batcher(worker: Worker, settings: Settings, model_name: str, **observers: Any) -> Batcher:
    """The `Batcher` of one model as the settings describe it (batch size, wait, queue size, request timeout,
    the inline and hold policies). The local runner uses it, and so does modalkit's stream class inside a Modal
    container, so streams batch the same way on both runtimes. ``observers``: the Batcher's ``on_*`` callbacks.
    Call `Batcher.start` on the event loop that will submit to it."""
    app = settings.app_settings
    return Batcher(
        worker,
        max_batch_size=app.batch_config.max_batch_size,
        wait_ms=app.batch_config.wait_ms,
        max_queue_size=app.server_config.max_queue_size,
        timeout_seconds=app.server_config.request_timeout_seconds,
        model_name=model_name,
        inline=InlinePolicy(),
        hold=HoldPolicy(max_batch_size=app.batch_config.max_batch_size, wait_seconds=app.batch_config.wait_ms / 1000),
        **observers,
    )


class LocalRunner:
    """Serves every model entry of the config on this machine: one pipeline, worker and batcher per entry.

    Args:
        pipeline_cls: The pipeline class; built once per model entry as
            ``pipeline_cls(name, local_model_repository_folder, common, **entry)``.
        settings: The service's settings (batching, server limits, queue config, model entries).
        sender: Delivers async results. By default the runner builds a `modalkit_queue.ReliableSender` from
            ``queue_config`` at `start` and closes (drains) it at `stop`; a sender passed in is used as it is
            and its owner starts and closes it.
        queue_backend: The backend for the sender the runner builds (default: ``create_backend(queue_config)``),
            e.g. a `modalkit_queue.MemoryBackend` to read results back in tests.
        metrics: Where batch and delivery metrics go (the app also uses it for request metrics).
        on_fatal: Called with the exception when a model hits a fatal (CUDA) error.
        freeze_gc: Once every model is loaded, move everything alive (modules, the app, the models) out of the
            garbage collector's reach (`gc.freeze`): full collections then scan only per-request objects
            instead of pausing the process for tens of milliseconds. For servers (`run` sets it); objects
            frozen this way are never freed, which is right for what lives as long as the process.
    """

    def __init__(
        self,
        pipeline_cls: type[InferencePipeline[Any, Any]],
        settings: Settings,
        *,
        sender: OutboxSender | None = None,
        queue_backend: QueueBackend | None = None,
        metrics: ServeMetrics | None = None,
        on_fatal: Callable[[BaseException], object] | None = None,
        freeze_gc: bool = False,
    ) -> None:
        self.pipeline_cls = pipeline_cls
        self.freeze_gc = freeze_gc
        self.settings = settings
        self.metrics = metrics if metrics is not None else ServeMetrics()
        self.on_fatal = on_fatal
        self.on_load_failure: Callable[[str, str], object] | None = None
        """Called with a model's name and error when it fails to load, after which no other model is loaded
        (`run` sets it to stop the server); None keeps serving the models that did load."""
        server = settings.app_settings.server_config
        self.jobs = JobStore(server.job_ttl_seconds, server.max_jobs)
        self.journal: JobJournal | None = None
        self.model_names: list[str] = list(settings.model_settings.model_entries)
        self._sender = sender
        self._owns_sender = sender is None
        self._queue_backend = queue_backend
        self._batchers: dict[str, Batcher] = {}
        self._load_errors: dict[str, str] = {}
        self._loader: asyncio.Task[None] | None = None
        self._loaded = False
        self._stopping = False
        self._drain_deadline: float | None = None
        # Async results accepted but not yet handed to the sender: they hold a place in its outbox from the
        # moment the job is accepted, so a burst cannot accept more jobs than the outbox can take later.
        self._outbox_reserved = 0
        # Jobs being committed to the journal (per model) and the group the current turn of the loop is filling.
        self._committing: dict[str, int] = {}
        self._accept_group: _AcceptGroup | None = None
        self.metrics.queue_depth_source = self.queue_depths
        queues = settings.app_settings.queue_config
        configured = [*(queues.allowed_queues or ()), *([queues.dead_letter.queue] if queues.dead_letter.queue else [])]
        self.metrics.queue_labels.configure(configured, only=queues.allowed_queues is not None)
        self.metrics.streams_source = self.open_streams
        self.metrics.ready_source = lambda: self.ready

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every model loaded, while none has hit a fatal error and the runner is not draining."""
        if not self._loaded or self._load_errors or self._stopping:
            return False
        return all(b.worker.ready for b in self._batchers.values())

    @property
    def sender(self) -> OutboxSender | None:
        """The async result sender (None until `start`)."""
        return self._sender

    def worker(self, model_name: str) -> Worker:
        """The worker serving a model (for tests and volume-reload hooks).

        Raises:
            UnknownModelError: no such model, or not loaded yet.
        """
        batcher = self._batchers.get(model_name)
        if batcher is None:
            raise UnknownModelError(model_name, list(self._batchers))
        return batcher.worker

    async def start(self) -> None:
        """Start the result sender and begin loading every model in a thread; returns without waiting."""
        if self._loader is not None:
            return
        server = self.settings.app_settings.server_config
        if server.journal_path is not None and self.journal is None:
            self.journal = JobJournal(
                server.journal_path, synchronous=server.journal_synchronous, ttl_seconds=server.job_ttl_seconds
            )
        if self._sender is None:
            self._sender = self._build_sender()
        self._loader = asyncio.create_task(self._load_all(), name="modalkit-load-models")

    async def reload_artefacts(self) -> dict[str, bool]:
        """Call every loaded model's ``on_volume_reload`` between its batches (the local volume reload).

        What Modal's ``volume_reload_interval_seconds`` does in a container, on demand: ``modalkit serve`` runs it
        on SIGHUP. The models are reloaded one after another, each off the event loop; a failing hook is logged
        and its model keeps serving the artefacts it had.

        Returns:
            Model name -> whether its hook succeeded.
        """
        results: dict[str, bool] = {}
        for name, batcher in list(self._batchers.items()):
            results[name] = await asyncio.to_thread(batcher.worker.on_volume_reload)
        return results

    async def wait_ready(self) -> bool:
        """Wait until loading finished; returns `ready`."""
        if self._loader is not None:
            await asyncio.shield(self._loader)
        return self.ready

    def begin_drain(self) -> None:
        """Start the drain clock: `stop` must end ``server_config.drain_timeout_seconds`` after the first call.

        The server calls it when SIGTERM arrives, so the time uvicorn spends finishing open requests counts
        against the same budget as the drain itself (a platform's grace period starts at the signal too).
        Safe from a signal handler; later calls change nothing.
        """
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.settings.app_settings.server_config.drain_timeout_seconds

    async def stop(self) -> None:
        """Drain: refuse new work, finish every queued batch (async jobs included), then deliver every result.

        Ends within ``server_config.drain_timeout_seconds`` of `begin_drain` (or of this call): batches get
        what is left of it, then the sender, which dead-letters what it could not deliver in time.
        """
        self._stopping = True
        self.begin_drain()
        deadline = self._drain_deadline
        assert deadline is not None
        if self._loader is not None and not self._loader.done():
            # A pipeline constructor cannot be interrupted; let it finish so its batcher can be closed cleanly.
            await asyncio.wait({self._loader}, timeout=max(0.0, deadline - time.monotonic()))
        queued = sum(b.in_flight for b in self._batchers.values())
        if queued:
            logger.info("draining: finishing %d queued items before exit", queued)
        for batcher in self._batchers.values():
            await batcher.close(max(0.0, deadline - time.monotonic()))
        if self._sender is not None and self._owns_sender:
            # The sender's close keeps to what is left, its dead-lettering included; the journal's close after
            # it only commits what is queued.
            remaining = max(0.0, deadline - time.monotonic() - _JOURNAL_CLOSE_SECONDS)
            delivered = await asyncio.to_thread(self._sender.close, remaining)
            if not delivered:
                logger.error("some async results were not delivered before shutdown; see the dead-letter file")
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)

    # -- the Runner protocol ---------------------------------------------------------------------------------

    async def predict(self, model_name: str, item: BaseModel, info: RequestInfo | None = None) -> BaseModel:
        """Run one input through the model's batcher (so concurrent calls share batches)."""
        batcher = self._batcher(model_name)
        queued = batcher.submit(item)
        try:
            return await batcher.result(queued)
        finally:
            if info is not None:
                info.batch_size = queued.batch_size or None
                info.queue_wait_ms = queued.queue_wait * 1000.0 if queued.batch_size else None

    async def predict_many(
        self, model_name: str, items: Sequence[BaseModel], info: RequestInfo | None = None
    ) -> list[BaseModel]:
        """Queue every input at once (they fill batches of up to max_batch_size) and collect the results."""
        batcher = self._batcher(model_name)
        queued = batcher.submit_many(items)
        try:
            return [await batcher.result(q) for q in queued]
        except BaseException:
            for q in queued:
                future = q.future
                if future is None:
                    continue
                if not future.done():
                    future.cancel()  # the caller is gone (timeout): do not spend the model on the rest
                elif not future.cancelled():
                    future.exception()  # mark retrieved: one timeout answers the whole request
            raise
        finally:
            if info is not None:
                _summarise(queued, info)

    def predict_stream(self, model_name: str, item: BaseModel, info: RequestInfo | None = None) -> ChunkStream:
        """Queue one input to stream; streams waiting together run as one batch, one model call per step."""
        stream = self._batcher(model_name).submit_stream(item)
        if info is not None:
            info.model = model_name
        return stream

    async def submit_async(
        self, model_name: str, request: AsyncInputModel[Any], info: RequestInfo | None = None
    ) -> str:
        """Accept an async job; its result goes to the request's queues and to the job store.

        With a journal, the job is committed to it before this returns (and so before the 202), and it is
        queued for its batch once committed, whether or not the caller is still waiting.
        """
        batcher = self._batcher(model_name)
        sender = self._sender
        reserve = sender is not None and _delivers(request)
        if reserve and sender is not None and not sender.has_capacity(self._outbox_reserved + 1):
            raise QueueFullError("the async result outbox is full; retry later")
        job = Job(new_job_id(), model_name, request, None if info is None else info.owner)
        if self.journal is None:
            batcher.submit_job(job)
            self._queued(job, reserve)
            return job.job_id
        # Room is taken now, for the jobs of this turn too: they join the batch queue only once committed.
        batcher.check_room(1 + self._committing.get(model_name, 0))
        self._committing[model_name] = self._committing.get(model_name, 0) + 1
        if reserve:
            self._outbox_reserved += 1
        group = self._accept_group
        if group is None:
            loop = asyncio.get_running_loop()
            group = self._accept_group = _AcceptGroup(loop.create_future())
            loop.call_soon(self._hand_over_accepts)
        group.jobs.append((job, reserve, request.model_dump_json()))
        # Shielded: a caller that goes away does not cancel the commit its neighbours wait for.
        await asyncio.shield(group.committed)
        return job.job_id

    def _hand_over_accepts(self) -> None:
        # Every job accepted in one turn of the event loop goes to the journal in one hand-over and wakes the
        # loop once when committed: a per-job future and wake-up cost more than the commit itself.
        group, self._accept_group = self._accept_group, None
        journal = self.journal
        if group is None or journal is None:
            return
        loop = group.committed.get_loop()

        def committed(error: JournalError | None) -> None:
            loop.call_soon_threadsafe(self._accepts_committed, group, error)

        journal.accept_many([(job.job_id, job.model_name, body, job.owner) for job, _, body in group.jobs], committed)

    def _accepts_committed(self, group: _AcceptGroup, error: JournalError | None) -> None:
        for job, reserve, _ in group.jobs:
            self._committing[job.model_name] -= 1
            if error is not None:
                if reserve:
                    self._outbox_reserved = max(0, self._outbox_reserved - 1)
                continue
            try:
                self._batcher(job.model_name).submit_job(job, room_checked=True)
            except (NotReadyError, UnknownModelError) as exc:
                # Stopping: the job is durable in the journal and runs at the next start.
                logger.warning(
                    "job %s is in the journal but not queued now (%s); it runs at the next start", job.job_id, exc
                )
                if reserve:
                    self._outbox_reserved = max(0, self._outbox_reserved - 1)
                continue
            self._queued(job, reserve=False)
        if error is None:
            group.committed.set_result(None)
        else:
            group.committed.set_exception(error)
            group.committed.exception()  # every caller may have gone: the error is theirs, not the loop's

    def _queued(self, job: Job, reserve: bool) -> None:
        if reserve:
            self._outbox_reserved += 1
        self.jobs.add(job)
        self.metrics.async_jobs.inc((job.model_name,))

    async def job_status(self, job_id: str, info: RequestInfo | None = None) -> JobView | None:
        """The job's state and result (None if unknown, expired, or not the caller's)."""
        caller = None if info is None else info.owner
        job = self.jobs.get(job_id)
        if job is not None:
            return job.view() if same_owner(job.owner, caller) else None
        if self.journal is None:
            return None
        row = await asyncio.to_thread(self.journal.get, job_id)
        if row is None or time.time() - row.updated > self.jobs.ttl_seconds or not same_owner(row.owner, caller):
            return None
        if row.result is None:
            return JobView(row.job_id, "running" if row.state == "running" else "pending", None)
        result = self._parse_result(row.result)
        failed = is_failure(result)
        return JobView(row.job_id, "error" if failed else "success", result)

    # -- internals -------------------------------------------------------------------------------------------

    def _batcher(self, model_name: str) -> Batcher:
        batcher = self._batchers.get(model_name)
        if batcher is not None:
            return batcher
        if model_name in self._load_errors:
            # The cause (often a file path) is for the server log, not for callers.
            raise ModelLoadError(f"model {model_name} failed to load and is not served; the server log says why")
        if model_name in self.settings.model_settings.model_entries:
            raise NotReadyError(f"model {model_name} is still loading; retry shortly (see GET /ready)")
        raise UnknownModelError(model_name, self.model_names)

    def _build_sender(self) -> OutboxSender:
        sender = ReliableSender.from_config(
            self.settings.app_settings.queue_config,
            backend=self._queue_backend,
            on_event=self._on_delivery_event,
        )
        sender.start()
        return sender

    async def _load_all(self) -> None:
        model_settings = self.settings.model_settings
        for name, entry in model_settings.model_entries.items():
            if self._stopping:
                return
            started = time.monotonic()
            try:
                pipeline = await asyncio.to_thread(self._build_pipeline, name, entry)
            except Exception as exc:
                self._load_errors[name] = safe_error_message(exc)
                stopping = self.on_load_failure is not None
                logger.error(
                    "model %s failed to load (%s); %s",
                    name,
                    self._load_errors[name],
                    "stopping the server" if stopping else "the service stays not ready (GET /ready answers 503)",
                    exc_info=exc,
                )
                if self.on_load_failure is not None:
                    self.on_load_failure(name, self._load_errors[name])
                    return
                continue
            worker = Worker(pipeline, sender=self._sender, on_fatal=self._fatal(name))
            batcher = configured_batcher(
                worker,
                self.settings,
                name,
                on_batch=self.metrics.observe_batch,
                on_job_done=self._job_done,
                on_jobs_running=self._jobs_running,
                on_jobs_finished=self._jobs_finished,
                on_stream=self.metrics.observe_stream,
            )
            batcher.start()
            self._batchers[name] = batcher
            logger.info("model %s loaded in %.2fs", name, time.monotonic() - started)
        if self.journal is not None:
            self._replay(await asyncio.to_thread(self.journal.unfinished))
        if self.freeze_gc:
            gc.collect()
            gc.freeze()
        self._loaded = True
        if not self._load_errors:
            logger.info("all %d models loaded; ready", len(self._batchers))

    def _job_done(self, job: Job, result: BaseModel) -> None:
        # The worker has handed the result to the sender by now: its place in the outbox is taken for real.
        if self._sender is not None and _delivers(job.request):
            self._outbox_reserved = max(0, self._outbox_reserved - 1)
        self.jobs.finish(job, result)

    def _jobs_running(self, jobs: list[Job]) -> None:
        if self.journal is not None:
            self.journal.mark_many([(job.job_id, "running", None, None) for job in jobs])

    def _jobs_finished(self, done: list[tuple[Job, BaseModel]]) -> None:
        # On the batch's thread, before the sender gets the results: `GET /jobs` and the journal already say
        # what a consumer of the queue can see. The journal's writes keep their order, so this result_ready is
        # written before the sender's delivered, even if the delivery is quicker than the commit.
        for job, result in done:
            job.finish(result)
        journal = self.journal
        if journal is None:
            return
        marks: list[tuple[str, JournalState, str | None, str | None]] = []
        for job, result in done:
            body = type(result).__pydantic_serializer__.to_json(result).decode()
            delivered = self._sender is None or not _delivers(job.request)
            marks.append((job.job_id, "delivered" if delivered else "result_ready", body, None))
        journal.mark_many(marks)

    def _on_delivery_event(self, event: DeliveryEvent) -> None:
        self.metrics.on_delivery_event(event)
        journal = self.journal
        if journal is None:
            return
        if event.kind == "delivered":
            journal.mark(event.job_id, "delivered")
        elif event.kind in ("dead_lettered", "dead_letter_failed"):
            journal.mark(event.job_id, "dead_lettered", error=event.error)

    def _parse_result(self, text: str) -> BaseModel:
        _, output_model = self.pipeline_cls.io_models()
        try:
            return output_model.model_validate_json(text)
        except ValueError:
            return ItemError.model_validate_json(text)

    def _replay(self, rows: Sequence[JournalRow]) -> None:
        """Run again what the journal says never finished (same job ids) and re-send undelivered results."""
        input_model, _ = self.pipeline_cls.io_models()
        request_model: type[AsyncInputModel[Any]] = AsyncInputModel[input_model]  # type: ignore[valid-type]
        rerun = resent = 0
        for row in rows:
            batcher = self._batchers.get(row.model_name)
            if batcher is None:
                logger.error(
                    "journal job %s is for model %s, which is not loaded; left in the journal",
                    row.job_id,
                    row.model_name,
                )
                continue
            request = request_model.model_validate_json(row.request)
            job = Job(row.job_id, row.model_name, request, row.owner)
            if row.state == "result_ready" and row.result is not None:
                result = self._parse_result(row.result)
                self.jobs.add(job)
                self.jobs.finish(job, result)
                batcher.worker.deliver(request, result, row.job_id)
                resent += 1
            else:
                try:
                    batcher.submit_job(job)
                except QueueFullError:
                    logger.error("journal replay: batch queue full; job %s stays in the journal", row.job_id)
                    continue
                if self._sender is not None and _delivers(request):
                    self._outbox_reserved += 1
                self.jobs.add(job)
                rerun += 1
        if rerun or resent:
            logger.info("journal replay: %d jobs run again, %d results sent again", rerun, resent)

    def _build_pipeline(self, name: str, entry: Mapping[str, Any]) -> InferencePipeline[Any, Any]:
        model_settings = self.settings.model_settings
        return self.pipeline_cls(
            name, model_settings.local_model_repository_folder, dict(model_settings.common), **dict(entry)
        )

    def _fatal(self, name: str) -> Callable[[BaseException], None]:
        def on_fatal(exc: BaseException) -> None:
            logger.critical("model %s stopped after a fatal error; the service is no longer ready", name)
            if self.on_fatal is not None:
                self.on_fatal(exc)

        return on_fatal

    def open_streams(self) -> dict[str, int]:
        """Unfinished streams (waiting or streaming), per loaded model."""
        return {name: b.streams for name, b in self._batchers.items()}

    def queue_depths(self) -> dict[str, int]:
        """Items waiting for a batch, per loaded model."""
        return {name: b.depth for name, b in self._batchers.items()}


class _AcceptGroup:
    """The async jobs accepted in one turn of the event loop, committed to the journal together."""

    __slots__ = ("committed", "jobs")

    def __init__(self, committed: asyncio.Future[None]) -> None:
        self.committed = committed
        self.jobs: list[tuple[Job, bool, str]] = []  # (job, holds an outbox place, request JSON)


def _delivers(request: AsyncInputModel[Any]) -> bool:
    """Whether an async request's result goes to a queue (an empty queue name skips delivery)."""
    return bool(request.success_queue or request.failure_queue)


def _summarise(queued: Sequence[BatchItem], info: RequestInfo) -> None:
    ran = [q for q in queued if q.batch_size]
    if ran:
        info.batch_size = max(q.batch_size for q in ran)
        info.queue_wait_ms = max(q.queue_wait for q in ran) * 1000.0
