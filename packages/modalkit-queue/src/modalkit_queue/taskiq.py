"""taskiq: the ``taskiq`` backend and helpers to receive results. Needs ``modalkit-queue[taskiq]``.

Each result is kicked as a taskiq task **named after the queue**, with the message (JSON text) as its one
argument. With a ``redis://`` broker URL the backend uses taskiq-redis's ``RedisStreamBroker`` (Redis
streams with consumer groups and acknowledgements: a worker killed mid-task leaves the message pending to
be reclaimed, where ``ListQueueBroker`` would lose it), and each queue gets its own stream, named like the
queue. ``memory://`` uses taskiq's ``InMemoryBroker`` in-process (tasks run right away; for a queue with
no registered task, the backend keeps the messages readable through :meth:`TaskiqBackend.messages`).

How a consumer receives results sent to queue ``results``, with a taskiq worker::

    # consumer.py
    import json
    from modalkit_queue.taskiq import consumer_broker

    broker = consumer_broker("redis://localhost:6379", "results")

    @broker.task(task_name="results")
    async def on_result(message: str) -> None:
        result = json.loads(message)          # the output object, plus "job_id" (and "meta")
        ...                                   # at-least-once: skip a job_id you have already handled

    # run it with:  taskiq worker consumer:broker

or, without a worker (scripts, tests), with :class:`TaskiqConsumer`::

    async with TaskiqConsumer("redis://localhost:6379", "results") as consumer:
        messages = await consumer.receive_all()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from modalkit_config import QueueConfig
from modalkit_queue.errors import BatchDeliveryError, DeliveryError, MissingExtraError, QueueConfigError

if TYPE_CHECKING:
    from taskiq import AsyncBroker
    from taskiq_redis import RedisStreamBroker

__all__ = ["TaskiqBackend", "TaskiqConsumer", "consumer_broker"]

_STREAM_GROUP = "taskiq"  # taskiq-redis's default consumer group name


def _require_taskiq() -> None:
    try:
        import taskiq  # noqa: F401 (optional extra)
    except ImportError as exc:
        raise MissingExtraError("taskiq", "taskiq") from exc


def _require_taskiq_redis() -> None:
    _require_taskiq()
    try:
        import taskiq_redis  # noqa: F401 (optional extra)
    except ImportError as exc:
        raise MissingExtraError("taskiq", "taskiq_redis") from exc


def _scheme(broker_url: str) -> str:
    return broker_url.split("://", 1)[0].lower() if "://" in broker_url else ""


def _stream_broker(broker_url: str, queue_name: str = "taskiq", **kwargs: Any) -> RedisStreamBroker:
    _require_taskiq_redis()
    from taskiq_redis import RedisStreamBroker

    return RedisStreamBroker(broker_url, queue_name=queue_name, **kwargs)


def consumer_broker(broker_url: str, queue_name: str, **kwargs: Any) -> RedisStreamBroker:
    """The broker a ``taskiq worker`` runs to receive the results sent to ``queue_name``.

    It reads the queue's stream from its start (``consumer_id="0"``), so results sent before the worker
    first ran are not skipped. Register the handler with ``@broker.task(task_name=queue_name)``.

    Args:
        broker_url: ``redis://host:port/db`` (the same Redis the service sends to).
        queue_name: The queue name the service sends to (the async request's ``success_queue``/``failure_queue``).
        **kwargs: More ``RedisStreamBroker`` options (``idle_timeout``, ``consumer_group_name``, ...).
    """
    if _scheme(broker_url) not in ("redis", "rediss", "unix"):
        raise QueueConfigError(f"consumer_broker: expected a redis:// broker URL (got {broker_url!r})")
    kwargs.setdefault("consumer_id", "0")
    return _stream_broker(broker_url, queue_name, **kwargs)


class TaskiqBackend:
    """Kicks each result as a taskiq task named after its queue.

    Args:
        broker_url: ``redis://...`` / ``rediss://...`` (a ``RedisStreamBroker``) or ``memory://`` (an
            ``InMemoryBroker``). Ignored when ``broker`` is given.
        broker: A ready broker of your own (its tasks, middlewares and serializer are used as they are).

    Raises:
        MissingExtraError: taskiq (or taskiq-redis, for Redis) is not installed.
        QueueConfigError: The broker URL's scheme is not supported.
    """

    def __init__(self, broker_url: str = "memory://", *, broker: AsyncBroker | None = None) -> None:
        _require_taskiq()
        self.broker_url = broker_url
        self._owned = broker is None
        self._collect = False
        self._inbox: dict[str, list[str]] = {}
        self._inbox_lock = threading.Lock()
        if broker is not None:
            self.broker = broker
        else:
            scheme = _scheme(broker_url)
            if scheme in ("redis", "rediss", "unix"):
                self.broker = _stream_broker(broker_url)
            elif scheme == "memory":
                from taskiq import InMemoryBroker

                # await_inplace: the task has run by the time send() returns, so a failing handler is visible.
                self.broker = InMemoryBroker(await_inplace=True)
                self._collect = True
            else:
                raise QueueConfigError(
                    f"app_settings.queue_config.broker_url: unsupported taskiq broker URL {broker_url!r}; "
                    "use redis://host:port/db, rediss://..., or memory://"
                )
        self._labels_route = self._is_redis(self.broker)
        self._stream_group = getattr(self.broker, "consumer_group_name", None) if self._labels_route else None
        self._declared: set[str] = set()
        self._started = False
        self._start_lock: asyncio.Lock | None = None

    @classmethod
    def from_config(cls, queue_config: QueueConfig) -> TaskiqBackend:
        """The backend for ``backend: taskiq`` with ``queue_config.broker_url``."""
        return cls(queue_config.broker_url)

    @staticmethod
    def _is_redis(broker: AsyncBroker) -> bool:
        try:
            from taskiq_redis.redis_broker import BaseRedisBroker
        except ImportError:
            return False
        return isinstance(broker, BaseRedisBroker)

    async def _ensure_started(self) -> None:
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await self.broker.startup()
                self._started = True

    async def _declare_group(self, queue_name: str) -> None:
        """Create the queue's consumer group at the stream's start, so a worker started later sees everything.

        taskiq-redis creates a missing group at ``$`` (new messages only) when a worker starts, which would
        skip results sent before that; creating it here at ``0`` first avoids that.
        """
        if self._stream_group is None or queue_name in self._declared:
            return
        from redis.asyncio import Redis, ResponseError

        pool = getattr(self.broker, "connection_pool")  # noqa: B009 (typed Any on purpose)
        async with Redis(connection_pool=pool) as conn:
            try:
                await conn.xgroup_create(queue_name, self._stream_group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._declared.add(queue_name)

    def _collector(self, queue_name: str) -> None:
        if self.broker.find_task(queue_name) is not None:
            return

        async def keep(message: str) -> None:
            with self._inbox_lock:
                self._inbox.setdefault(queue_name, []).append(message)

        self.broker.register_task(keep, task_name=queue_name)

    async def send(self, queue_name: str, message: str) -> None:
        """Kick task ``queue_name`` with ``message`` as its argument."""
        from taskiq.kicker import AsyncKicker

        try:
            await self._ensure_started()
            await self._declare_group(queue_name)
            if self._collect:
                self._collector(queue_name)
            labels: dict[str, Any] = {"queue_name": queue_name} if self._labels_route else {}
            kicker: AsyncKicker[[str], None] = AsyncKicker(task_name=queue_name, broker=self.broker, labels=labels)
            await kicker.kiq(message)
        except Exception as exc:
            # After a Redis restart the stream and its group are gone: declare them again on the next try.
            self._declared.discard(queue_name)
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise DeliveryError(queue_name, f"kicking taskiq task {queue_name!r} failed: {cause}") from exc

    async def send_batch(self, queue_name: str, messages: Sequence[str]) -> None:
        """Kick one task per message, concurrently (taskiq has no batch kick)."""
        results = await asyncio.gather(*(self.send(queue_name, m) for m in messages), return_exceptions=True)
        failures = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
        for error in failures.values():
            if isinstance(error, asyncio.CancelledError):
                raise error
        if failures:
            raise BatchDeliveryError(queue_name, failures)

    def messages(self, queue_name: str) -> list[str]:
        """Messages kept for ``queue_name`` by a ``memory://`` broker with no task of that name (thread-safe)."""
        with self._inbox_lock:
            return list(self._inbox.get(queue_name, ()))

    async def close(self) -> None:
        """Shut the broker down if this backend started it (a broker passed in is left to its owner)."""
        if self._started and self._owned:
            await self.broker.shutdown()
        self._started = False


class TaskiqConsumer:
    """Reads the results sent to one queue's Redis stream, the way a taskiq worker would, without running one.

    It joins the stream's consumer group (``taskiq`` by default, the one workers use), decodes each taskiq
    message, returns the result text and acknowledges it. Use it from async code; delivery is at-least-once,
    so drop duplicates by ``job_id`` (:func:`~modalkit_queue.job_id_of`).

    Args:
        broker_url: ``redis://host:port/db``.
        queue_name: The queue (stream and task name) to read.
        consumer_group: The consumer group to read in.
        consumer_name: This reader's name within the group (messages it read but did not ack are re-read).
    """

    def __init__(
        self,
        broker_url: str,
        queue_name: str,
        *,
        consumer_group: str = _STREAM_GROUP,
        consumer_name: str = "modalkit-consumer",
    ) -> None:
        self.queue_name = queue_name
        self.consumer_group = consumer_group
        self.consumer_name = consumer_name
        self.broker = consumer_broker(
            broker_url, queue_name, consumer_group_name=consumer_group, consumer_name=consumer_name
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _read(self, conn: Any, start: str, count: int, block_ms: int | None) -> list[tuple[bytes, bytes]]:
        from redis.asyncio import ResponseError

        for _ in range(2):
            try:
                reply = await conn.xreadgroup(
                    self.consumer_group,
                    self.consumer_name,
                    {self.queue_name: start},
                    count=count,
                    block=block_ms,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # No group yet (or Redis restarted empty): create it at the start of the stream and read again.
                try:
                    await conn.xgroup_create(self.queue_name, self.consumer_group, id="0", mkstream=True)
                except ResponseError as again:
                    if "BUSYGROUP" not in str(again):
                        raise
                continue
            found: list[tuple[bytes, bytes]] = []
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    if fields:  # a pending entry whose data was trimmed comes back empty
                        found.append((entry_id, fields.get(b"data", b"")))
                    else:
                        found.append((entry_id, b""))
            return found
        return []

    async def receive(self, max_messages: int = 100, wait_seconds: float = 1.0) -> list[str]:
        """Up to ``max_messages`` results: first any this consumer read earlier without acknowledging, then new
        ones, waiting up to ``wait_seconds`` for the first to arrive. Each returned result is acknowledged."""
        from redis.asyncio import Redis

        bodies: list[str] = []
        async with Redis(connection_pool=self.broker.connection_pool) as conn:
            entries = await self._read(conn, "0", max_messages, None)
            if not entries:
                entries = await self._read(conn, ">", max_messages, max(1, int(wait_seconds * 1000)))
            for _entry_id, data in entries:
                if data:
                    bodies.append(self._decode(data))
            if entries:
                await conn.xack(self.queue_name, self.consumer_group, *[entry_id for entry_id, _ in entries])
        return bodies

    def _decode(self, data: bytes) -> str:
        message = self.broker.formatter.loads(data)
        if message.args:
            return str(message.args[0])
        return str(next(iter(message.kwargs.values()), ""))

    async def receive_all(self, max_messages: int = 10_000, wait_seconds: float = 1.0) -> list[str]:
        """Read until ``max_messages`` are in hand or a read waits ``wait_seconds`` and finds nothing."""
        bodies: list[str] = []
        while len(bodies) < max_messages:
            got = await self.receive(min(100, max_messages - len(bodies)), wait_seconds)
            if not got:
                break
            bodies.extend(got)
        return bodies

    async def close(self) -> None:
        """Close the consumer's Redis connections."""
        await self.broker.connection_pool.disconnect()
