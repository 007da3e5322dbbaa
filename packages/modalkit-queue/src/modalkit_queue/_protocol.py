"""The contract every queue backend fulfils."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["BatchQueueBackend", "QueueBackend"]


@runtime_checkable
class QueueBackend(Protocol):
    """Where async results go: a small, async, at-least-once sink.

    A backend only sends; retries, backoff and dead letters are :class:`~modalkit_queue.ReliableSender`'s job.
    Implementations raise on failure (ideally a :class:`~modalkit_queue.errors.DeliveryError`) and return
    ``None`` once the queue has accepted the message. A send that raised may still have been delivered
    (the reply can be lost), so a message may arrive more than once: consumers drop duplicates by ``job_id``.
    """

    async def send(self, queue_name: str, message: str) -> None:
        """Deliver one message (JSON text) to ``queue_name``."""
        ...

    async def close(self) -> None:
        """Release connections, threads and clients. Called once, after the last send."""
        ...


@runtime_checkable
class BatchQueueBackend(QueueBackend, Protocol):
    """A backend that can deliver several messages to one queue in one round trip."""

    async def send_batch(self, queue_name: str, messages: Sequence[str]) -> None:
        """Deliver ``messages`` to ``queue_name``.

        Raises:
            BatchDeliveryError: Some messages failed; ``failures`` names them by index, the rest were delivered.
            Exception: Anything else means none of them may be assumed delivered.
        """
        ...
