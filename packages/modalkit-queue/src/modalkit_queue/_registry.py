"""Backends by name: the built-in ones (imported lazily) and any the user registers."""

from __future__ import annotations

import concurrent.futures
import logging
import re
import threading
import uuid
from collections.abc import Callable

from modalkit_config import QueueConfig, load_settings
from modalkit_queue._message import job_id_of
from modalkit_queue._protocol import QueueBackend
from modalkit_queue._sender import DeliveryEvent, ReliableSender
from modalkit_queue.errors import QueueConfigError, UnknownBackendError

__all__ = [
    "BackendFactory",
    "check_backend",
    "create_backend",
    "register_backend",
    "registered_backends",
    "send_response_queue",
]

logger = logging.getLogger("modalkit_queue")

BackendFactory = Callable[[QueueConfig], QueueBackend]
"""Builds a backend from ``app_settings.queue_config``. A class whose constructor takes the config works too."""

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _memory(queue_config: QueueConfig) -> QueueBackend:
    from modalkit_queue.memory import MemoryBackend

    return MemoryBackend.from_config(queue_config)


def _sqs(queue_config: QueueConfig) -> QueueBackend:
    from modalkit_queue.sqs import SQSBackend

    return SQSBackend.from_config(queue_config)


def _taskiq(queue_config: QueueConfig) -> QueueBackend:
    from modalkit_queue.taskiq import TaskiqBackend

    return TaskiqBackend.from_config(queue_config)


_BUILTIN: dict[str, BackendFactory] = {"memory": _memory, "sqs": _sqs, "taskiq": _taskiq}
_lock = threading.Lock()
_registry: dict[str, BackendFactory] = dict(_BUILTIN)


def register_backend(name: str, factory: BackendFactory, *, replace: bool = False) -> None:
    """Make ``backend: <name>`` in ``queue_config`` build a backend with ``factory`` (thread-safe).

    Args:
        name: The name used in YAML (letters, digits, ``_ . -``).
        factory: Called with the ``QueueConfig`` each time a backend is created.
        replace: Allow replacing an existing registration (including a built-in one).

    Raises:
        QueueConfigError: The name is malformed, the factory is not callable, or the name is taken.

    Example::

        class RabbitBackend:
            def __init__(self, queue_config: QueueConfig) -> None: ...
            async def send(self, queue_name: str, message: str) -> None: ...
            async def close(self) -> None: ...

        register_backend("rabbit", RabbitBackend)
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise QueueConfigError(f"register_backend: invalid backend name {name!r} (use letters, digits, _ . -)")
    if not callable(factory):
        raise QueueConfigError(f"register_backend: factory for {name!r} must be callable (got {factory!r})")
    with _lock:
        if name in _registry and not replace:
            raise QueueConfigError(
                f"register_backend: a backend named {name!r} is already registered; pass replace=True to override it"
            )
        _registry[name] = factory


def unregister_backend(name: str) -> None:
    """Forget a registered backend; a built-in one goes back to its default factory."""
    with _lock:
        if name in _BUILTIN:
            _registry[name] = _BUILTIN[name]
        else:
            _registry.pop(name, None)


def registered_backends() -> list[str]:
    """The backend names ``queue_config.backend`` accepts, sorted."""
    with _lock:
        return sorted(_registry)


def check_backend(name: str) -> None:
    """Raise `UnknownBackendError` (with a "did you mean") unless ``name`` is a registered backend.

    For checking a configuration before anything starts, without building the backend.
    """
    with _lock:
        known = name in _registry
        available = sorted(_registry)
    if not known:
        raise UnknownBackendError(name, available)


def create_backend(queue_config: QueueConfig | None = None) -> QueueBackend:
    """Build the backend ``queue_config.backend`` names (the default config gives the memory backend).

    Raises:
        UnknownBackendError: No backend has that name.
        MissingExtraError: The backend's optional library is not installed (the message says what to install).
    """
    config = queue_config if queue_config is not None else QueueConfig()
    with _lock:
        factory = _registry.get(config.backend)
        available = sorted(_registry)
    if factory is None:
        raise UnknownBackendError(config.backend, available)
    return factory(config)


def send_response_queue(
    queue_name: str,
    queue_message: str,
    *,
    queue_config: QueueConfig | None = None,
    backend: QueueBackend | None = None,
    timeout: float | None = 60.0,
) -> bool:
    """Deliver one message and wait for the outcome: the blocking convenience the earlier modalkit offered.

    It goes through a short-lived :class:`ReliableSender`, so it retries with backoff and dead-letters like
    the served path does. For many messages, keep one ``ReliableSender`` instead: this builds a backend
    (and a thread) per call.

    Args:
        queue_name: Target queue.
        queue_message: JSON text; its ``job_id`` (if any) labels logs and the dead letter.
        queue_config: Where and how to deliver; by default ``app_settings.queue_config`` from
            :func:`modalkit_config.load_settings` (``modalkit.yaml``, or the files ``MODALKIT_CONFIG`` lists),
            read at call time as the earlier modalkit did.
        backend: Use this backend instead of building one from ``queue_config`` (it is closed afterwards).
        timeout: Most seconds to wait for delivery or dead letter.

    Returns:
        ``True`` if the message was delivered, ``False`` if it was dead-lettered or not done in time.

    Raises:
        TypeError: ``queue_message`` is not a string.
        ConfigError: No ``queue_config`` was given and the configuration cannot be read.
        QueueConfigError: The configuration names an unknown backend or is unusable.
        MissingExtraError: The backend's optional library is not installed.
    """
    if not isinstance(queue_message, str):
        raise TypeError(f"send_response_queue: queue_message must be a string (got {type(queue_message).__name__})")
    config = queue_config if queue_config is not None else load_settings().app_settings.queue_config
    outcome: concurrent.futures.Future[bool] = concurrent.futures.Future()

    def on_event(event: DeliveryEvent) -> None:
        if event.kind != "retry" and not outcome.done():
            outcome.set_result(event.kind == "delivered")

    sender = ReliableSender.from_config(config, backend=backend, on_event=on_event).start()
    done = False
    try:
        sender.submit(queue_name, queue_message, job_id_of(queue_message) or f"adhoc-{uuid.uuid4().hex}")
        delivered = outcome.result(timeout=timeout)
        done = True
        return delivered
    except concurrent.futures.TimeoutError:
        logger.error("send_response_queue: no outcome for queue %r within %ss", queue_name, timeout)
        return False
    finally:
        # Not done in time: close(0) writes the message to the dead-letter file rather than lose it.
        sender.close(timeout=None if done else 0)
