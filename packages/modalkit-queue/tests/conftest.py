"""Helpers shared by this package's tests (the real servers come from the root conftest)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from modalkit_queue import DeliveryEvent


class Tally:
    """An ``on_event`` callback that counts delivery events, so a test can wait for a stage of an outage."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.dead: list[DeliveryEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: DeliveryEvent) -> None:
        with self._cond:
            self.kinds[event.kind] += 1
            if event.kind.startswith("dead"):
                self.dead.append(event)
            self._cond.notify_all()

    def wait_for(self, kind: str, count: int, timeout: float = 60) -> None:
        """Block until ``count`` events of ``kind`` happened (fails the test after ``timeout`` seconds)."""
        with self._cond:
            reached = self._cond.wait_for(lambda: self.kinds[kind] >= count, timeout)
        assert reached, f"waited for {count} {kind!r} events; saw {dict(self.kinds)}"


@pytest.fixture
def tally() -> Tally:
    return Tally()
