"""Scheduling policies for the `Batcher`: small objects that decide, from recorded history, how a batch runs.

A policy holds state and rules only: no threads, no locks, no sleeping. It reads time from a clock it was
given, so a test drives it with a fake one. The `Batcher` asks it (``allows()``) and tells it what happened
(``record()``); passing ``None`` instead of a policy turns that behaviour off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Clock", "HoldPolicy", "InlinePolicy"]

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


class HoldPolicy:
    """Should an idle model start a batch now, or hold it briefly because more items are about to arrive?

    The callers a batch answered usually send again within a millisecond or two (a closed loop), and items that
    queued while it ran are waiting too. Starting the next batch with only the first few of them splits the
    batch in two for good: the rest wait a whole model call. So after each batch the policy expects
    ``queued + ratio * size`` items (at most ``max_batch_size``), where ``ratio`` is the learned share of
    answered callers that came back in time, and holds until that many are ready, or until the bound passed:
    ``min(wait_seconds, cost_fraction * batch cost)`` after the batch finished. A lone caller (a batch of 1,
    nothing queued) never waits; nor do a full batch, ``wait_seconds`` 0, or a model so fast that the hold would
    be under ``min_hold_seconds`` (there the inline path is what pays).

    The ratio only falls when a hold ran to its bound short of the expected items (the traffic is open-loop,
    or the callers slower than the bound), and rises when the expected items came while holding, so the
    policy stops holding for traffic that does not come back and starts again when it does.

    Args:
        max_batch_size: The most items in one batch.
        wait_seconds: ``wait_ms`` / 1000: no hold lasts longer.
        cost_fraction: No hold lasts longer than this share of the moving average of batch times.
        min_hold_seconds: Holds shorter than this are not worth a thread wake-up: run at once.
        clock: Where time comes from.
    """

    def __init__(
        self,
        *,
        max_batch_size: int,
        wait_seconds: float,
        cost_fraction: float = 0.15,
        min_hold_seconds: float = 100e-6,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.wait_seconds = wait_seconds
        self.cost_fraction = cost_fraction
        self.min_hold_seconds = min_hold_seconds
        self.clock = clock
        self.ratio = 1.0  # share of a batch's callers that came back within the hold's bound
        self.average_seconds = 0.0  # moving average of batch run times
        self._size = 0  # the last batch's size; 0 before the first
        self._queued = 0  # items waiting when it finished
        self._finished = 0.0
        self._held = False  # this cycle already held once
        self._observed = True  # this cycle's outcome went into ratio
        self.wanted = 1
        """While `hold` holds: how many ready items end the hold (the batcher wakes its thread only then)."""

    def record(self, size: int, *, queued: int, seconds: float) -> None:
        """A batch of ``size`` items just finished after ``seconds``, with ``queued`` items waiting."""
        self.average_seconds = seconds if self.average_seconds == 0.0 else 0.8 * self.average_seconds + 0.2 * seconds
        self._size = size
        self._queued = queued
        self._finished = self.clock()
        self._held = False
        self._observed = False

    def hold(self, ready: int) -> float:
        """Seconds to wait before starting a batch from ``ready`` items; 0.0 means start it now."""
        if self._size == 0 or ready >= self.max_batch_size:
            return 0.0
        bound = min(self.wait_seconds, self.cost_fraction * self.average_seconds)
        if bound < self.min_hold_seconds:
            return 0.0
        expected = min(self.max_batch_size, math.floor(self._queued + self.ratio * self._size + 0.5))
        left = self._finished + bound - self.clock()
        if ready >= expected:
            came = 1.0 if self._held else min(1.0, max(0, ready - self._queued) / self._size)
            self._observe(came, upward_only=not self._held)
            return 0.0
        if left <= 0.0:
            self._observe(min(1.0, max(0, ready - self._queued) / self._size), upward_only=False)
            return 0.0
        self._held = True
        self.wanted = expected
        return left

    def _observe(self, came: float, *, upward_only: bool) -> None:
        if self._observed or (upward_only and came <= self.ratio):
            return
        self._observed = True
        self.ratio = 0.5 * self.ratio + 0.5 * came
