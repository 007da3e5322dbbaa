"""The in-process backend: queues in a dict, readable back, for local runs and tests."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Sequence

from modalkit_config import QueueConfig

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """In-process queues that keep every message so local runs and tests can read them back.

    Thread-safe: a :class:`~modalkit_queue.ReliableSender` sends from its own thread while a test or a local
    tool reads from another. Messages live only as long as the process.

    Args:
        max_messages_per_queue: Keep at most this many messages per queue, dropping the oldest
            (``None``, the default, keeps everything; set it for long local runs).
    """

    def __init__(self, max_messages_per_queue: int | None = None) -> None:
        if max_messages_per_queue is not None and max_messages_per_queue < 1:
            raise ValueError(f"max_messages_per_queue must be >= 1 or None (got {max_messages_per_queue})")
        self._lock = threading.Lock()
        self._maxlen = max_messages_per_queue
        self._queues: defaultdict[str, deque[str]] = defaultdict(lambda: deque(maxlen=self._maxlen))

    @classmethod
    def from_config(cls, queue_config: QueueConfig) -> MemoryBackend:
        """The factory the registry uses for ``backend: memory`` (nothing in the config applies to it)."""
        del queue_config
        return cls()

    async def send(self, queue_name: str, message: str) -> None:
        """Append ``message`` to ``queue_name``."""
        with self._lock:
            self._queues[queue_name].append(message)

    async def send_batch(self, queue_name: str, messages: Sequence[str]) -> None:
        """Append ``messages`` to ``queue_name`` in order."""
        with self._lock:
            self._queues[queue_name].extend(messages)

    async def close(self) -> None:
        """Nothing to release; the messages stay readable."""

    def messages(self, queue_name: str) -> list[str]:
        """A copy of the messages in ``queue_name``, oldest first (empty for a queue never sent to)."""
        with self._lock:
            return list(self._queues.get(queue_name, ()))

    def pop_all(self, queue_name: str) -> list[str]:
        """Remove and return the messages in ``queue_name``, oldest first."""
        with self._lock:
            found = self._queues.pop(queue_name, None)
            return list(found) if found is not None else []

    def queue_names(self) -> list[str]:
        """The queues that hold messages, sorted."""
        with self._lock:
            return sorted(name for name, items in self._queues.items() if items)
