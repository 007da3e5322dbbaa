"""Batcher: modal.batched semantics on one machine, with a bounded queue, timeouts and draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modalkit_pipeline import AsyncInputModel, ItemError
from modalkit_serve import Worker
from modalkit_serve._batcher import Batcher
from modalkit_serve._jobs import Job
from modalkit_serve.errors import NotReadyError, QueueFullError, RequestTimeoutError
from serve_support import ToyInput, ToyOutput, ToyPipeline, new_pipeline

GUARD = 10.0  # seconds: a hung test fails instead of blocking the suite; not a timing assertion


def inputs(*texts: str) -> list[ToyInput]:
    return [ToyInput(text=t) for t in texts]


def make(pipeline: ToyPipeline, **kw: Any) -> Batcher:
    options: dict[str, Any] = {"max_batch_size": 8, "wait_ms": 10, "max_queue_size": 100, "timeout_seconds": 30}
    options.update(kw)
    return Batcher(Worker(pipeline), model_name="toy", **options)


@pytest.fixture
async def pipeline() -> ToyPipeline:
    return new_pipeline()


@pytest.fixture
async def batcher(pipeline: ToyPipeline) -> AsyncIterator[Batcher]:
    b = make(pipeline)
    b.start()
    yield b
    pipeline.gate.set()
    await b.close(GUARD)


async def wait_started(pipeline: ToyPipeline) -> None:
    await asyncio.wait_for(asyncio.to_thread(pipeline.started.wait, GUARD), GUARD)


async def test_items_submitted_together_share_one_batch(batcher: Batcher, pipeline: ToyPipeline) -> None:
    items = [batcher.submit(m) for m in inputs("a", "b", "c", "d", "e")]

    results = await asyncio.wait_for(asyncio.gather(*(batcher.result(i) for i in items)), GUARD)

    assert [r.upper for r in results if isinstance(r, ToyOutput)] == ["A", "B", "C", "D", "E"]
    assert pipeline.batches == [["a", "b", "c", "d", "e"]]
    assert all(i.batch_size == 5 for i in items)


async def test_a_lone_item_runs_without_waiting_for_company(pipeline: ToyPipeline) -> None:
    # wait_ms of ten minutes: if the batcher waited for the batch to fill, the guard would fail the test.
    b = make(pipeline, wait_ms=600_000)
    b.start()
    try:
        item = b.submit(ToyInput(text="solo"))
        result = await asyncio.wait_for(b.result(item), GUARD)
    finally:
        await b.close(GUARD)

    assert isinstance(result, ToyOutput)
    assert pipeline.batches == [["solo"]]


async def test_items_accumulate_while_the_model_is_busy_up_to_max_batch_size(
    batcher: Batcher, pipeline: ToyPipeline
) -> None:
    pipeline.gate.clear()
    first = batcher.submit(ToyInput(text="block"))
    await wait_started(pipeline)
    rest = batcher.submit_many(inputs(*[f"t{i}" for i in range(20)]))
    assert batcher.depth == 20

    pipeline.gate.set()
    await asyncio.wait_for(asyncio.gather(*(batcher.result(i) for i in [first, *rest])), GUARD)

    assert [len(b) for b in pipeline.batches] == [1, 8, 8, 4]
    assert [i.batch_size for i in rest] == [8] * 16 + [4] * 4


async def test_a_full_queue_refuses_new_items(pipeline: ToyPipeline) -> None:
    b = make(pipeline, max_queue_size=3)
    b.start()
    try:
        pipeline.gate.clear()
        running = b.submit(ToyInput(text="block"))
        await wait_started(pipeline)
        queued = b.submit_many(inputs("a", "b", "c"))

        with pytest.raises(QueueFullError) as info:
            b.submit(ToyInput(text="d"))
        assert info.value.retry_after >= 1
        assert "limit 3" in str(info.value)
        with pytest.raises(QueueFullError):
            b.submit_many(inputs("x", "y"))  # all or nothing
        assert b.depth == 3
    finally:
        pipeline.gate.set()
    await asyncio.wait_for(asyncio.gather(*(b.result(i) for i in [running, *queued])), GUARD)
    await b.close(GUARD)


async def test_an_item_not_answered_in_time_gets_a_timeout_and_is_not_run(pipeline: ToyPipeline) -> None:
    b = make(pipeline, timeout_seconds=0.05)
    b.start()
    pipeline.gate.clear()
    blocked = b.submit(ToyInput(text="block"))
    await wait_started(pipeline)
    queued = b.submit(ToyInput(text="late"))

    with pytest.raises(RequestTimeoutError, match="did not answer within"):
        await asyncio.wait_for(b.result(queued), GUARD)
    with pytest.raises(RequestTimeoutError):
        await asyncio.wait_for(b.result(blocked), GUARD)

    pipeline.gate.set()
    after = b.submit(ToyInput(text="after"))
    await asyncio.wait_for(b.result(after), GUARD)
    await b.close(GUARD)
    assert ["late"] not in pipeline.batches
    assert all("late" not in batch for batch in pipeline.batches)


async def test_async_jobs_run_and_report_their_results(pipeline: ToyPipeline) -> None:
    done: list[tuple[str, str, Any]] = []
    finished = asyncio.Event()

    def on_job_done(job: Job, result: Any) -> None:
        done.append((job.job_id, job.status, result))
        finished.set()

    b = Batcher(
        Worker(pipeline),
        max_batch_size=4,
        wait_ms=5,
        max_queue_size=10,
        timeout_seconds=0.01,  # shorter than the batch: async jobs must not time out
        model_name="toy",
        on_job_done=on_job_done,
    )
    b.start()
    pipeline.gate.clear()
    job = Job("job-1", "toy", AsyncInputModel[ToyInput](message=ToyInput(text="block")))
    b.submit_job(job)
    await wait_started(pipeline)
    assert job.status == "running"
    await asyncio.sleep(0.05)
    pipeline.gate.set()
    await asyncio.wait_for(finished.wait(), GUARD)
    await b.close(GUARD)

    [(job_id, status, result)] = done
    assert job_id == "job-1"
    assert status == "running"  # the store sets the final status; the batcher only hands over the result
    assert isinstance(result, ToyOutput)
    assert result.upper == "BLOCK"


async def test_close_finishes_everything_queued_then_refuses_work(pipeline: ToyPipeline) -> None:
    results: list[Any] = []
    b = make(pipeline, on_job_done=lambda job, result: results.append(result))
    b.start()
    pipeline.gate.clear()
    sync_items = [b.submit(ToyInput(text="block")), *b.submit_many(inputs("a", "b"))]
    await wait_started(pipeline)
    for i in range(3):
        b.submit_job(Job(f"j{i}", "toy", AsyncInputModel[ToyInput](message=ToyInput(text=f"job{i}"))))

    closing = asyncio.ensure_future(b.close(GUARD))
    await asyncio.sleep(0)
    with pytest.raises(NotReadyError):
        b.submit(ToyInput(text="too late"))
    pipeline.gate.set()
    assert await asyncio.wait_for(closing, GUARD)

    assert all(i.future is not None and i.future.done() for i in sync_items)
    assert [r.upper for r in results] == ["JOB0", "JOB1", "JOB2"]
    assert b.depth == 0


async def test_a_fatal_error_stops_the_batcher_taking_work(batcher: Batcher) -> None:
    item = batcher.submit(ToyInput(text="cuda"))
    result = await asyncio.wait_for(batcher.result(item), GUARD)

    assert isinstance(result, ItemError)
    with pytest.raises(NotReadyError, match="fatal"):
        batcher.submit(ToyInput(text="a"))


async def test_every_batch_is_reported_to_the_observer(pipeline: ToyPipeline) -> None:
    seen: list[tuple[str, int]] = []
    b = make(pipeline, on_batch=lambda model, size, wait, run: seen.append((model, size)))
    b.start()
    items = b.submit_many(inputs("a", "b", "c"))
    await asyncio.wait_for(asyncio.gather(*(b.result(i) for i in items)), GUARD)
    await b.close(GUARD)

    assert seen == [("toy", 3)]


async def test_a_batcher_that_was_never_started_refuses_work(pipeline: ToyPipeline) -> None:
    b = make(pipeline)
    with pytest.raises(NotReadyError):
        b.submit(ToyInput(text="a"))
    assert await b.close(1)


def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(Worker(new_pipeline()), max_batch_size=0, wait_ms=0, max_queue_size=1, timeout_seconds=1)


class _BrokenWorker(Worker):
    """A worker with a bug outside the pipeline (its own code raises)."""

    def run_messages(self, messages: Any, async_jobs: Any = None, indices: Any = None) -> Any:
        raise RuntimeError("worker bug")


async def test_a_batch_that_fails_outside_the_pipeline_gives_internal_errors(pipeline: ToyPipeline) -> None:
    b = Batcher(_BrokenWorker(pipeline), max_batch_size=8, wait_ms=10, max_queue_size=10, timeout_seconds=30)
    b.start()
    try:
        item = b.submit(ToyInput(text="a"))
        result = await asyncio.wait_for(b.result(item), GUARD)
    finally:
        await b.close(GUARD)

    assert isinstance(result, ItemError)
    assert (result.error, result.kind) == ("internal error while running the batch", "internal")


async def test_each_failed_item_carries_its_callers_index_in_a_shared_batch(
    batcher: Batcher, pipeline: ToyPipeline
) -> None:
    first = batcher.submit_many(inputs("a", "item-error"))
    second = batcher.submit_many(inputs("raise", "b", "item-error"))
    lone = batcher.submit(ToyInput(text="item-error"))

    results = await asyncio.wait_for(asyncio.gather(*(batcher.result(i) for i in [*first, *second, lone])), GUARD)

    assert len(pipeline.batches[0]) == 6  # all six shared the first batch
    assert [r.index if isinstance(r, ItemError) else None for r in results] == [None, 1, 0, None, 2, 0]
