"""Backends by name: the built-in ones (imported lazily) and any the user registers."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from modalkit_config import QueueConfig
from modalkit_queue._protocol import QueueBackend
from modalkit_queue.errors import QueueConfigError, UnknownBackendError

__all__ = [
    "BackendFactory",
    "check_backend",
    "create_backend",
    "register_backend",
    "registered_backends",
]


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
