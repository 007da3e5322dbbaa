"""Scheduling policies for the `Batcher`: small objects that decide, from recorded history, how a batch runs.

A policy holds state and rules only: no threads, no locks, no sleeping. It reads time from a clock it was
given, so a test drives it with a fake one. The `Batcher` asks it (``allows()``) and tells it what happened
(``record()``); passing ``None`` instead of a policy turns that behaviour off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "InlinePolicy"]

Clock = Callable[[], float]
"""Seconds on a monotonic clock (``time.perf_counter`` unless a test gives its own)."""


class InlinePolicy:
    """When may an idle model's batch run on the event loop instead of the batch thread?

    Only when the model is known to be fast: the last ``warmup_batches`` batches each ran in under
    ``fast_seconds``, and so did a moving average of batch times. One slower batch resets the streak. An inline
    batch over ``limit_seconds`` trips the guard: inline running stays off for ``backoff_seconds``, doubling on
    each later trip, so the event loop stalls at most once in a long while.

    Args:
        fast_seconds: A batch under this counts as fast.
        limit_seconds: An inline batch over this trips the guard.
        warmup_batches: Consecutive fast batches needed before inline running.
        backoff_seconds: How long the first trip turns inline running off.
        clock: Where time comes from.
    """

    def __init__(
        self,
        *,
        fast_seconds: float = 150e-6,
        limit_seconds: float = 0.002,
        warmup_batches: int = 16,
        backoff_seconds: float = 600.0,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.fast_seconds = fast_seconds
        self.limit_seconds = limit_seconds
        self.warmup_batches = warmup_batches
        self.first_backoff_seconds = backoff_seconds
        self.clock = clock
        self.fast_streak = 0  # consecutive batches under fast_seconds
        self.average_seconds = 0.0  # moving average of batch run times
        self.backoff_seconds = 0.0  # the current back-off; 0 until the guard first tripped
        self.trips = 0
        self._off_until = 0.0  # clock time; inline stays off before it

    def allows(self) -> bool:
        """True when the next batch may run inline (the caller checks that the model is idle and open)."""
        return (
            self.fast_streak >= self.warmup_batches
            and self.average_seconds < self.fast_seconds
            and self.clock() >= self._off_until
        )

    def record(self, seconds: float, *, inline: bool) -> bool:
        """Record a batch that ran for ``seconds``; True when it was inline and tripped the guard."""
        self.average_seconds = seconds if self.average_seconds == 0.0 else 0.8 * self.average_seconds + 0.2 * seconds
        self.fast_streak = self.fast_streak + 1 if seconds < self.fast_seconds else 0
        if not (inline and seconds > self.limit_seconds):
            return False
        self.trips += 1
        self.backoff_seconds = self.first_backoff_seconds if self.trips == 1 else 2 * self.backoff_seconds
        self._off_until = self.clock() + self.backoff_seconds
        self.fast_streak = 0
        return True
