"""Batcher: a model known to be fast runs its batches on the event loop while it is idle; a slow one never does.

Each batcher gets its own `InlinePolicy` here so that what counts as fast or slow does not depend on this
machine's speed: fast batches are far under a generous bound, slow ones sleep well past a tight one. The
policy's rules on their own are tested in test_scheduling.py; these tests check the batcher follows them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from modalkit_pipeline import ItemError
from modalkit_serve import Worker
from modalkit_serve._batcher import Batcher
from modalkit_serve._scheduling import HoldPolicy, InlinePolicy
from modalkit_serve.errors import RequestTimeoutError
from serve_support import ToyInput, ToyOutput, ToyPipeline

GUARD = 10.0  # seconds: a hung test fails instead of blocking the suite; not a timing assertion


class ThreadRecordingPipeline(ToyPipeline):
    """Records the thread each batch ran on; ``slow`` sleeps ``slow_seconds`` in predict."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("toy", ".", {})
        self.threads: list[int] = []
        self.slow_seconds = 0.2
        self.always_slow = False

    def predict(self, input_list: list[ToyInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        self.threads.append(threading.get_ident())
        if self.always_slow or any(i.text == "slow" for i in input_list):
            time.sleep(self.slow_seconds)
        return super().predict(input_list, preprocessed_data)


def make(pipeline: ToyPipeline, fast_seconds: float = 1.0, **kw: Any) -> Batcher:
    # Generous "fast" (any batch of this toy model qualifies) and a limit a 200 ms sleep always exceeds, yet wide
    # enough (50 ms) that a fast toy batch preempted on a loaded machine does not trip it by chance.
    policy = InlinePolicy(fast_seconds=fast_seconds, limit_seconds=0.05, warmup_batches=4)
    return Batcher(
        Worker(pipeline), model_name="toy", max_batch_size=8, wait_ms=10, max_queue_size=100, inline=policy, **kw
    )


async def one(b: Batcher, text: str) -> Any:
    return await asyncio.wait_for(b.result(b.submit(ToyInput(text=text))), GUARD)


async def asleep(b: Batcher) -> None:
    """Until the batch thread went back to sleep after its last batch.

    Only an idle model runs inline. The thread hands a batch's results back before it goes to sleep, so on a
    loaded machine the caller's next item can reach the queue while the thread is still awake, and it takes it.
    """
    deadline = time.monotonic() + GUARD
    while not b._idle:
        assert time.monotonic() < deadline, "the batch thread never went idle"
        await asyncio.sleep(0.001)


async def test_a_fast_model_runs_on_the_event_loop_after_warm_up() -> None:
    pipeline = ThreadRecordingPipeline()
    b = make(pipeline, timeout_seconds=30)
    b.start()
    loop_thread = threading.get_ident()
    try:
        results = [await one(b, f"t{i}") for i in range(4)]
        await asleep(b)
        results += [await one(b, f"t{i}") for i in range(4, 10)]
    finally:
        await b.close(GUARD)

    assert [r.upper for r in results] == [f"T{i}" for i in range(10)]
    # Warm-up: the first batches ran on the batch thread, and those fast batches let the rest run inline.
    assert all(t != loop_thread for t in pipeline.threads[:4])
    assert pipeline.threads[4:] == [loop_thread] * 6


async def test_an_inline_batch_keeps_every_semantic_of_a_threaded_one() -> None:
    pipeline = ThreadRecordingPipeline()
    seen: list[tuple[str, int]] = []
    b = make(pipeline, timeout_seconds=30, on_batch=lambda model, size, wait, run: seen.append((model, size)))
    b.start()
    try:
        for i in range(4):
            await one(b, f"w{i}")
        await asleep(b)
        items = b.submit_many([ToyInput(text=t) for t in ("a", "item-error", "c")])
        results = await asyncio.wait_for(asyncio.gather(*(b.result(i) for i in items)), GUARD)
    finally:
        await b.close(GUARD)

    assert pipeline.threads[-1] == threading.get_ident()
    assert isinstance(results[0], ToyOutput)
    assert isinstance(results[2], ToyOutput)
    assert isinstance(results[1], ItemError)
    assert all(i.batch_size == 3 for i in items)
    assert seen[-1] == ("toy", 3)
    assert len(seen) == 5


async def test_one_slow_inline_batch_turns_inline_running_off(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = ThreadRecordingPipeline()
    b = make(pipeline, timeout_seconds=30)
    b.start()
    loop_thread = threading.get_ident()
    try:
        for i in range(4):
            await one(b, f"w{i}")
        await asleep(b)
        for i in range(4, 6):
            await one(b, f"w{i}")
        assert pipeline.threads[-1] == loop_thread
        with caplog.at_level("INFO", logger="modalkit.batcher"):
            await one(b, "slow")  # inline, and past the 50 ms limit
            later = [await one(b, f"t{i}") for i in range(10)]
    finally:
        await b.close(GUARD)

    assert [r.upper for r in later] == [f"T{i}" for i in range(10)]
    assert pipeline.threads[-11] == loop_thread  # the slow batch itself ran inline
    assert all(t != loop_thread for t in pipeline.threads[-10:])
    assert [r.levelname for r in caplog.records if "event loop" in r.getMessage()] == ["INFO"]


async def test_a_model_slow_from_the_start_never_runs_inline() -> None:
    pipeline = ThreadRecordingPipeline()
    pipeline.always_slow = True
    b = make(pipeline, fast_seconds=0.001, timeout_seconds=30)  # a 200 ms batch is never fast
    b.start()
    loop_thread = threading.get_ident()
    try:
        for i in range(8):
            await one(b, f"t{i}")
    finally:
        await b.close(GUARD)

    assert len(pipeline.threads) == 8
    assert loop_thread not in pipeline.threads


async def test_close_drains_on_the_batch_thread_even_for_a_fast_model() -> None:
    pipeline = ThreadRecordingPipeline()
    b = make(pipeline, timeout_seconds=30)
    b.start()
    loop_thread = threading.get_ident()
    for i in range(6):
        await one(b, f"w{i}")
    items = b.submit_many([ToyInput(text=t) for t in ("x", "y")])
    assert await b.close(GUARD)

    assert all(i.future is not None and i.future.done() for i in items)
    assert pipeline.threads[-1] != loop_thread


async def test_an_inline_batch_that_overruns_the_timeout_answers_with_a_timeout() -> None:
    pipeline = ThreadRecordingPipeline()
    pipeline.slow_seconds = 1.0
    b = make(pipeline, timeout_seconds=0.5)
    b.start()
    loop_thread = threading.get_ident()
    try:
        for i in range(6):
            await one(b, f"w{i}")
        await asleep(b)
        with pytest.raises(RequestTimeoutError):
            await one(b, "slow")
    finally:
        await b.close(GUARD)

    assert pipeline.threads[-1] == loop_thread  # it did run inline, and its caller still got the timeout


async def test_no_policy_never_runs_inline() -> None:
    pipeline = ThreadRecordingPipeline()
    b = Batcher(
        Worker(pipeline), model_name="toy", max_batch_size=8, wait_ms=10, max_queue_size=100, timeout_seconds=30
    )
    b.start()
    try:
        for i in range(20):
            await one(b, f"t{i}")
    finally:
        await b.close(GUARD)

    assert len(pipeline.threads) == 20
    assert threading.get_ident() not in pipeline.threads


@pytest.mark.parametrize(("hold", "sizes"), [(True, [4, 4]), (False, [4, 1, 3])])
async def test_an_idle_model_holds_its_batch_for_the_callers_it_just_answered(hold: bool, sizes: list[int]) -> None:
    # A generous bound (1 s) so the 10 ms gap between the callers' returns always fits: the test is about the rule
    # being applied, not about timing.
    pipeline = ThreadRecordingPipeline()
    pipeline.always_slow = True
    seen: list[int] = []
    policy = HoldPolicy(max_batch_size=8, wait_seconds=1.0, cost_fraction=100.0) if hold else None
    b = Batcher(
        Worker(pipeline),
        model_name="toy",
        max_batch_size=8,
        wait_ms=1000,
        max_queue_size=100,
        timeout_seconds=30,
        on_batch=lambda model, size, wait, run: seen.append(size),
        hold=policy,
    )
    b.start()
    try:
        first = b.submit_many([ToyInput(text=f"a{i}") for i in range(4)])
        await asyncio.wait_for(asyncio.gather(*(b.result(i) for i in first)), GUARD)
        one_back = b.submit(ToyInput(text="b0"))
        await asyncio.sleep(0.01)
        rest = b.submit_many([ToyInput(text=f"b{i}") for i in range(1, 4)])
        await asyncio.wait_for(asyncio.gather(*(b.result(i) for i in [one_back, *rest])), GUARD)
    finally:
        await b.close(GUARD)

    assert seen == sizes


async def test_a_holding_thread_is_woken_only_when_the_expected_items_are_ready() -> None:
    # Each wake-up of the batch thread takes the GIL from the event loop that is reading the very requests the hold
    # waits for, so arrivals short of the expected count must not wake it. The hold starts when the last batch
    # finishes (its callers are expected back), so only the arrival that completes the next batch wakes it.
    pipeline = ThreadRecordingPipeline()
    pipeline.always_slow = True
    seen: list[int] = []
    b = Batcher(
        Worker(pipeline),
        model_name="toy",
        max_batch_size=8,
        wait_ms=1000,
        max_queue_size=100,
        timeout_seconds=30,
        on_batch=lambda model, size, wait, run: seen.append(size),
        hold=HoldPolicy(max_batch_size=8, wait_seconds=1.0, cost_fraction=100.0),
    )
    b.start()
    try:
        first = b.submit_many([ToyInput(text=f"a{i}") for i in range(4)])
        await asyncio.wait_for(asyncio.gather(*(b.result(i) for i in first)), GUARD)
        before = b.wakeups
        items = []
        for i in range(4):
            items.append(b.submit(ToyInput(text=f"b{i}")))
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*(b.result(i) for i in items)), GUARD)
        woken = b.wakeups - before
    finally:
        await b.close(GUARD)

    assert seen == [4, 4]
    assert woken == 1
