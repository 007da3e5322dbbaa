"""``from modalkit.task_queue import ...``: queue backends and delivery (from modalkit-queue).

The earlier backends had ``async send_message(queue, message) -> bool``; backends now have
``async send(queue, message)`` and raise on failure. A ``queue_backend`` class attribute with the old method
still works on a `ModalService` (it is adapted by `LegacyQueueBackend`). ``InMemoryBackend`` is the old name
of `MemoryBackend`.
"""

from modalkit._service import LegacyQueueBackend
from modalkit_queue import (
    MemoryBackend,
    QueueBackend,
    ReliableSender,
    SQSBackend,
    TaskiqBackend,
    create_backend,
    register_backend,
    send_response_queue,
)

InMemoryBackend = MemoryBackend

__all__ = [
    "InMemoryBackend",
    "LegacyQueueBackend",
    "MemoryBackend",
    "QueueBackend",
    "ReliableSender",
    "SQSBackend",
    "TaskiqBackend",
    "create_backend",
    "register_backend",
    "send_response_queue",
]
