"""Scheduling policies on their own: no threads, no sleeping; time is a fake clock the test moves."""

from __future__ import annotations

import pytest

from modalkit_serve._scheduling import HoldPolicy, InlinePolicy


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


def hold_policy(clock: FakeClock, wait_ms: float = 5.0) -> HoldPolicy:
    return HoldPolicy(max_batch_size=32, wait_seconds=wait_ms / 1000, cost_fraction=0.1, clock=clock)


def after_batch(policy: HoldPolicy, clock: FakeClock, size: int, queued: int = 0, seconds: float = 0.030) -> None:
    clock.now += seconds
    policy.record(size, queued=queued, seconds=seconds)


def test_a_lone_caller_never_waits() -> None:
    clock = FakeClock()
    policy = hold_policy(clock)
    assert policy.hold(1) == 0.0  # nothing recorded yet: run at once
    for _ in range(5):
        after_batch(policy, clock, 1)
        clock.now += 0.001  # the caller sends again 1 ms later
        assert policy.hold(1) == 0.0


def test_an_idle_model_holds_while_the_last_batch_s_callers_come_back() -> None:
    clock = FakeClock()
    policy = hold_policy(clock)
    after_batch(policy, clock, 16)  # 30 ms batch: the hold is at most 10% of it, 3 ms (under wait_ms 5)
    clock.now += 0.0005
    assert policy.hold(1) == pytest.approx(0.0025)  # until 3 ms after the batch finished
    clock.now += 0.001
    assert policy.hold(15) == pytest.approx(0.0015)
    assert policy.hold(16) == 0.0  # all 16 are back: run now


def test_the_hold_ends_at_its_bound_whatever_the_history_says() -> None:
    clock = FakeClock()
    policy = hold_policy(clock, wait_ms=1.0)  # wait_ms is the tighter bound here
    after_batch(policy, clock, 16)
    assert policy.hold(3) == pytest.approx(0.001)
    clock.now += 0.001
    assert policy.hold(3) == 0.0


def test_wait_ms_zero_never_holds() -> None:
    clock = FakeClock()
    policy = hold_policy(clock, wait_ms=0.0)
    after_batch(policy, clock, 16)
    assert policy.hold(1) == 0.0


def test_a_full_batch_never_waits() -> None:
    clock = FakeClock()
    policy = hold_policy(clock)
    after_batch(policy, clock, 32, queued=40)
    assert policy.hold(32) == 0.0


def test_items_queued_during_the_batch_wait_for_the_callers_it_answered() -> None:
    # Split batches heal: 7 waited while a batch of 9 ran; the 9 answered callers are expected back.
    clock = FakeClock()
    policy = hold_policy(clock)
    after_batch(policy, clock, 9, queued=7)
    assert policy.hold(7) > 0.0
    clock.now += 0.001
    assert policy.hold(16) == 0.0


def test_callers_that_do_not_come_back_stop_the_holds() -> None:
    # Open-loop traffic: answered callers do not send again, so each hold runs to its bound with few arrivals.
    # The policy learns that and holds less and less.
    clock = FakeClock()
    policy = hold_policy(clock)
    holds = []
    for _ in range(8):
        after_batch(policy, clock, 8)
        holds.append(policy.hold(1) > 0.0)
        clock.now += 0.003
        policy.hold(1)  # the bound passed with one arrival: run
    assert holds[0] is True
    assert holds[-1] is False


def test_a_model_too_fast_to_hold_for_never_holds() -> None:
    clock = FakeClock()
    policy = hold_policy(clock)
    after_batch(policy, clock, 16, seconds=0.00002)  # 20 us batches: a hold would be 2 us
    assert policy.hold(1) == 0.0


def test_a_hold_says_how_many_ready_items_end_it() -> None:
    # The batcher wakes its thread only when this many items are ready (or the bound passed), not per arrival.
    clock = FakeClock()
    policy = hold_policy(clock)
    after_batch(policy, clock, 9, queued=7)
    assert policy.hold(7) > 0.0
    assert policy.wanted == 16
    assert policy.hold(15) > 0.0
    assert policy.wanted == 16
    assert policy.hold(16) == 0.0
