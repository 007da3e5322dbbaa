"""Errors raised by modalkit-queue.

The tree::

    QueueError (Exception)                 root: anything modalkit-queue raises
    ├── MissingExtraError (ImportError)    a backend's optional library is not installed; says what to pip install
    ├── QueueConfigError (ValueError)      a backend name, broker URL or sender setting is unusable
    │   └── UnknownBackendError            queue_config.backend names no registered backend
    ├── OutboxFullError                    ReliableSender.submit: the bounded outbox is full (serve answers 503)
    ├── SenderClosedError                  ReliableSender.submit before start() or after close()
    └── DeliveryError                      one send to a queue failed (the sender retries it)
        ├── QueueNotFoundError             the queue does not exist and create_missing is off
        ├── MessageTooLargeError           the message is over the backend's size limit (it will never fit)
        └── BatchDeliveryError             some messages of a batch failed; ``failures`` maps index -> error
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

__all__ = [
    "BatchDeliveryError",
    "DeliveryError",
    "MessageTooLargeError",
    "MissingExtraError",
    "OutboxFullError",
    "QueueConfigError",
    "QueueError",
    "QueueNotFoundError",
    "SenderClosedError",
    "UnknownBackendError",
]


class QueueError(Exception):
    """Root of every error modalkit-queue raises."""


class MissingExtraError(QueueError, ImportError):
    """A backend needs an optional library that is not installed.

    Attributes:
        extra: The modalkit-queue extra that installs it (``sqs``, ``taskiq``).
        package: The missing import (``boto3``, ``taskiq_redis``).
        install: The exact command that fixes it.
    """

    def __init__(self, extra: str, package: str) -> None:
        self.extra = extra
        self.package = package
        self.install = f'pip install "modalkit-queue[{extra}]"'
        super().__init__(
            f"the {extra!r} queue backend needs the {package!r} package, which is not installed; "
            f"install it with: {self.install}",
            name=package,
        )


class QueueConfigError(QueueError, ValueError):
    """A queue setting cannot be used; the message names the key and what was expected."""


class UnknownBackendError(QueueConfigError):
    """``queue_config.backend`` names no registered backend.

    Attributes:
        name: The name that was asked for.
        available: The names that are registered.
    """

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = available
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        super().__init__(
            f"app_settings.queue_config.backend: unknown queue backend {name!r}; {hint}registered backends are "
            f"{', '.join(repr(a) for a in available)}. Register your own with "
            "modalkit_queue.register_backend(name, factory) before the service starts."
        )


class OutboxFullError(QueueError):
    """The sender's bounded outbox is full: too many results are waiting for delivery.

    Attributes:
        outbox_size: The configured bound (``queue_config.outbox_size``).
    """

    def __init__(self, outbox_size: int) -> None:
        self.outbox_size = outbox_size
        super().__init__(
            f"the delivery outbox is full ({outbox_size} results waiting); try again later "
            "or raise app_settings.queue_config.outbox_size"
        )


class SenderClosedError(QueueError):
    """A result was submitted to a sender that is not running (not started yet, or closed)."""


class DeliveryError(QueueError):
    """One send to a queue failed.

    Attributes:
        queue_name: The queue the message was for.
    """

    def __init__(self, queue_name: str, message: str) -> None:
        self.queue_name = queue_name
        super().__init__(message)


class QueueNotFoundError(DeliveryError):
    """The queue does not exist, and the backend was told not to create it."""


class MessageTooLargeError(DeliveryError):
    """The message is larger than the backend accepts, so no retry can deliver it.

    Attributes:
        size: The message size in bytes (UTF-8).
        limit: The backend's limit in bytes.
    """

    def __init__(self, queue_name: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(queue_name, f"message for queue {queue_name!r} is {size} bytes, over the {limit}-byte limit")


class BatchDeliveryError(DeliveryError):
    """Some messages of a batch were not delivered; the others were.

    Attributes:
        failures: Index in the batch -> why that message failed.
    """

    def __init__(self, queue_name: str, failures: Mapping[int, BaseException]) -> None:
        self.failures = dict(failures)
        first = next(iter(self.failures.values()), None)
        super().__init__(
            queue_name,
            f"{len(self.failures)} message(s) of a batch to {queue_name!r} failed"
            + (f" (first: {first})" if first is not None else ""),
        )
