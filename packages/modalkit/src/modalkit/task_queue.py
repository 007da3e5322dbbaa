"""``from modalkit.task_queue import ...``: the earlier modalkit's queue API, kept working over modalkit-queue.

The earlier backends had ``async send_message(queue, message) -> bool`` (``False`` on failure); modalkit-queue's
backends have ``async send(queue, message)``, which raises, and a `modalkit_queue.ReliableSender` around them
retries and dead-letters. This module keeps the earlier forms:

- `QueueBackend` is the earlier protocol (``send_message``). A `ModalService` given such a backend
  (``queue_backend = ...`` or ``MyService(queue_backend=...)``) wraps it in `LegacyQueueBackend`, so a ``False``
  is retried like any failure.
- `InMemoryBackend` and `SQSBackend` are modalkit-queue's memory and SQS backends with ``send_message`` added,
  and ``SQSBackend.available``. As before, the SQS one creates a queue that does not exist yet.
- `create_backend` takes a backend name and keyword arguments (``create_backend("memory")``), as before, or a
  ``QueueConfig`` as in modalkit-queue. `register_backend` takes a class with ``send_message``.
- `TaskIQExample` and `CustomRedisExample`: the two example backends of the earlier docs, working.
- `send_response_queue` delivers one message with the configured backend and says whether it arrived.

New code should use ``modalkit_queue`` directly (``send``/``close`` backends and ``ReliableSender``).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, cast, runtime_checkable

import modalkit_queue
from modalkit.exceptions import BackendError, DependencyError, TypeValidationError
from modalkit_config import QueueConfig
from modalkit_queue import MemoryBackend, ReliableSender, TaskiqBackend, registered_backends
from modalkit_queue.errors import MissingExtraError

__all__ = [
    "CustomRedisExample",
    "InMemoryBackend",
    "LegacyQueueBackend",
    "MemoryBackend",
    "QueueBackend",
    "ReliableSender",
    "SQSBackend",
    "TaskIQExample",
    "TaskiqBackend",
    "create_backend",
    "register_backend",
    "send_response_queue",
]

logger = logging.getLogger("modalkit")


@runtime_checkable
class QueueBackend(Protocol):
    """The earlier backend protocol: send one message, say whether it was accepted."""

    async def send_message(self, queue_name: str, message: str) -> bool:
        """Send ``message`` (JSON text) to ``queue_name``; ``True`` once the queue accepted it."""
        ...


class LegacyQueueBackend:
    """Adapts the earlier modalkit's queue backends (``async send_message(queue, message) -> bool``).

    A ``False`` return becomes an exception, so the sender retries and dead-letters as for any failure.
    """

    def __init__(self, legacy: Any) -> None:
        self.legacy = legacy

    async def send(self, queue_name: str, message: str) -> None:
        """Deliver through the legacy backend; raise when it reports failure."""
        ok = await self.legacy.send_message(queue_name, message)
        if ok is False:
            raise ConnectionError(f"{type(self.legacy).__name__}.send_message returned False for {queue_name!r}")

    async def close(self) -> None:
        """Close the legacy backend if it has a ``close``."""
        close = getattr(self.legacy, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result


def _require_text(message: object, what: str = "message") -> None:
    if not isinstance(message, str):
        raise TypeValidationError(
            f"Expected string JSON text as the {what}, got {type(message).__name__}; "
            "serialise it first, e.g. output.model_dump_json()"
        )


class _SendMessage:
    """Adds the earlier ``send_message -> bool`` to a modalkit-queue backend (``send`` raises on failure)."""

    async def send_message(self, queue_name: str, message: str) -> bool:
        """Send once; ``False`` (and an ERROR log line saying why) when the backend refused or failed.

        Raises:
            TypeValidationError: ``message`` is not a string.
        """
        _require_text(message)
        backend = cast("modalkit_queue.QueueBackend", self)  # mixed into a backend class, which has send()
        try:
            await backend.send(queue_name, message)
        except Exception as exc:
            logger.error("%s could not send to queue %r: %s", type(self).__name__, queue_name, exc)
            return False
        return True


class InMemoryBackend(_SendMessage, MemoryBackend):
    """modalkit-queue's `MemoryBackend` (messages readable back with ``messages(queue)``), plus ``send_message``."""


class SQSBackend(_SendMessage, modalkit_queue.SQSBackend):
    """modalkit-queue's SQS backend plus the earlier ``send_message`` and ``available``.

    As in the earlier modalkit, a queue that does not exist is created (``create_missing=False`` turns that off),
    and without boto3 the backend is still built, with ``available`` false and every ``send_message`` false.

    Args:
        **kwargs: Those of ``modalkit_queue.SQSBackend`` (``region_name``, ``endpoint_url``, ...).
    """

    available: bool

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("create_missing", True)
        try:
            super().__init__(**kwargs)
        except MissingExtraError as exc:
            self.available = False
            logger.warning("SQSBackend is not available: %s", exc)
        else:
            self.available = True

    async def send(self, queue_name: str, message: str) -> None:
        """Deliver through SQS (raises `DependencyError` when boto3 is missing)."""
        if not self.available:
            raise DependencyError('the SQS backend needs boto3: pip install "modalkit-queue[sqs]"')
        await super().send(queue_name, message)

    async def close(self) -> None:
        """Release the boto3 client and threads."""
        if self.available:
            await super().close()


class TaskIQExample(_SendMessage, TaskiqBackend):
    """The earlier docs' taskiq backend: modalkit-queue's taskiq backend with ``send_message``.

    Each message is kicked as a task named after the queue (read it with ``modalkit_queue.TaskiqConsumer`` or a
    ``taskiq worker`` on ``modalkit_queue.consumer_broker(url, queue)``).

    Args:
        broker_url: ``redis://...`` (a Redis stream per queue) or ``memory://``.

    Raises:
        DependencyError: taskiq (or taskiq-redis, for Redis) is not installed.
    """

    def __init__(self, broker_url: str = "redis://localhost:6379") -> None:
        try:
            super().__init__(broker_url)
        except MissingExtraError as exc:
            raise DependencyError(str(exc)) from exc


class CustomRedisExample:
    """The earlier docs' custom backend: ``LPUSH`` each message onto a Redis list named after the queue.

    Args:
        redis_url: Where Redis listens.
        **kwargs: Passed to ``redis.asyncio.from_url``.

    Raises:
        DependencyError: the ``redis`` package is not installed.
    """

    def __init__(self, redis_url: str = "redis://localhost:6379", **kwargs: Any) -> None:
        try:
            import redis.asyncio
        except ImportError as exc:
            raise DependencyError("CustomRedisExample needs the redis package: pip install redis") from exc
        self.redis = redis.asyncio.from_url(redis_url, **kwargs)

    async def send_message(self, queue_name: str, message: str) -> bool:
        """Push ``message`` onto the list ``queue_name``; ``False`` (logged) when Redis cannot be reached."""
        _require_text(message)
        try:
            await self.redis.lpush(queue_name, message)
        except Exception as exc:
            logger.error("CustomRedisExample could not push to %r: %s", queue_name, exc)
            return False
        return True

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()


# Earlier-style classes registered by name: create_backend(name) builds them with the caller's kwargs. The
# queue package's registry gets an adapter for each, so `queue_config.backend: <name>` works in served apps too.
_earlier_classes: dict[str, type[Any]] = {}


def register_backend(name: str, backend_class: type[Any]) -> None:
    """Register an earlier-style backend class (with ``send_message``) under ``name``, replacing any before.

    ``create_backend(name, **kwargs)`` then returns ``backend_class(**kwargs)``, and ``queue_config.backend: name``
    makes served apps deliver through ``backend_class()`` (wrapped in `LegacyQueueBackend`, so retried).
    A class with the new ``send``/``close`` methods is registered as it is.
    """

    def factory(config: QueueConfig) -> modalkit_queue.QueueBackend:
        del config
        backend = backend_class()
        if hasattr(backend, "send"):
            queue_backend: modalkit_queue.QueueBackend = backend
            return queue_backend
        return LegacyQueueBackend(backend)

    modalkit_queue.register_backend(name, factory, replace=True)
    _earlier_classes[name] = backend_class


def create_backend(backend_type: str | QueueConfig | None = None, **kwargs: Any) -> Any:
    """Build a queue backend.

    Args:
        backend_type: A backend name, as in the earlier modalkit (``"memory"``, ``"sqs"``, ``"taskiq"`` or one
            given to `register_backend`), or a ``QueueConfig`` (or ``None``), as ``modalkit_queue.create_backend``.
        **kwargs: With a name: the backend's constructor arguments (``"taskiq"`` takes ``broker_url``).

    Returns:
        With a name, a backend with ``send_message`` (`InMemoryBackend`, `SQSBackend`, `TaskIQExample`, your
        class); with a config, modalkit-queue's backend.

    Raises:
        BackendError: no backend is registered under that name.
    """
    if not isinstance(backend_type, str):
        return modalkit_queue.create_backend(backend_type)
    earlier = _earlier_classes.get(backend_type)
    if earlier is not None and backend_type in registered_backends():
        return earlier(**kwargs)
    if backend_type == "memory":
        return InMemoryBackend(**kwargs)
    if backend_type == "sqs":
        return SQSBackend(**kwargs)
    if backend_type == "taskiq":
        return TaskIQExample(**kwargs)
    known = sorted({"memory", "sqs", "taskiq", *_earlier_classes})
    raise BackendError(
        f"unknown queue backend {backend_type!r}; known backends: {', '.join(known)}. "
        "Register your own with modalkit.task_queue.register_backend(name, cls)"
    )


def send_response_queue(queue_name: str, queue_message: str, **kwargs: Any) -> bool:
    """Deliver one message with the backend ``app_settings.queue_config`` names; ``True`` once delivered.

    It reads the configuration when called (``modalkit.yaml``, or the files ``MODALKIT_CONFIG`` lists) and retries
    like the served path (``queue_config.retry``); a message it cannot deliver goes to the dead letter and the
    call returns ``False``. Keyword arguments are those of ``modalkit_queue.send_response_queue``.

    Raises:
        TypeValidationError: ``queue_message`` is not a string.
    """
    _require_text(queue_message, "queue_message")
    return modalkit_queue.send_response_queue(queue_name, queue_message, **kwargs)
