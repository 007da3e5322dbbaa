"""Scheduling policies on their own: no threads, no sleeping; time is a fake clock the test moves."""

from __future__ import annotations

from modalkit_serve._scheduling import InlinePolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def inline_policy(clock: FakeClock, warmup: int = 3) -> InlinePolicy:
    return InlinePolicy(
        fast_seconds=0.001, limit_seconds=0.01, warmup_batches=warmup, backoff_seconds=60.0, clock=clock
    )


def test_inline_is_allowed_only_after_the_warm_up_streak_of_fast_batches() -> None:
    policy = inline_policy(FakeClock())
    seen = []
    for _ in range(3):
        seen.append(policy.allows())
        policy.record(0.0001, inline=False)
    seen.append(policy.allows())
    assert seen == [False, False, False, True]


def test_one_batch_over_the_fast_bound_resets_the_streak() -> None:
    policy = inline_policy(FakeClock())
    for seconds in (0.0001, 0.0001, 0.005, 0.0001, 0.0001):
        policy.record(seconds, inline=False)
    assert not policy.allows()  # two fast batches since the slow one, three needed
    policy.record(0.0001, inline=False)
    # Still off: the moving average remembers the 5 ms batch.
    assert policy.allows() is (policy.average_seconds < 0.001)


def test_a_slow_threaded_batch_never_trips_the_guard() -> None:
    policy = inline_policy(FakeClock())
    assert policy.record(1.0, inline=False) is False
    assert policy.trips == 0


def test_an_inline_batch_over_the_limit_turns_inline_off_for_the_back_off_which_doubles() -> None:
    clock = FakeClock()
    policy = inline_policy(clock, warmup=1)
    policy.record(0.0001, inline=False)
    assert policy.allows()

    assert policy.record(0.02, inline=True) is True
    assert policy.trips == 1
    assert policy.backoff_seconds == 60.0
    for _ in range(20):
        policy.record(0.00001, inline=False)  # fast again, and the average falls back under the bound
    clock.now += 59.9
    assert not policy.allows()
    clock.now += 0.2
    assert policy.allows()

    assert policy.record(0.02, inline=True) is True
    assert (policy.trips, policy.backoff_seconds) == (2, 120.0)
    for _ in range(20):
        policy.record(0.00001, inline=False)
    clock.now += 119.0
    assert not policy.allows()
    clock.now += 1.1
    assert policy.allows()


def test_an_inline_batch_under_the_limit_keeps_inline_on() -> None:
    policy = inline_policy(FakeClock(), warmup=1)
    policy.record(0.0001, inline=False)
    assert policy.record(0.0005, inline=True) is False
    assert policy.allows()
