"""The batcher's streams: batches of streams advance one model call per step, a cancelled stream frees its slot
and the model hears of it, a slow reader pauses its batch (bounded buffer) and is cut off if it stays behind,
and sync requests are not kept waiting for a long stream's end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from modalkit_pipeline import ItemError
from modalkit_serve import Worker
from modalkit_serve._batcher import Batcher
from modalkit_serve._streams import SlowReaderError, StreamItem
from modalkit_serve.errors import RequestTimeoutError
from stream_support import Completion, Prompt, Token, TokenStream

GUARD = 10.0  # seconds: a hung test fails instead of blocking the suite; not a timing assertion


class Recorder:
    def __init__(self) -> None:
        self.chunks = 0
        self.outcomes: list[str] = []

    def __call__(self, model: str, chunks: int, outcome: str | None) -> None:
        self.chunks += chunks
        if outcome is not None:
            self.outcomes.append(outcome)


@pytest.fixture
async def pipeline() -> TokenStream:
    return TokenStream("tokens", ".", {})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def make(pipeline: TokenStream, recorder: Recorder) -> AsyncIterator[Callable[..., Batcher]]:
    made: list[Batcher] = []

    def build(**kw: Any) -> Batcher:
        options: dict[str, Any] = {"max_batch_size": 8, "wait_ms": 5, "max_queue_size": 100, "timeout_seconds": 30}
        options.update(kw)
        batcher = Batcher(Worker(pipeline), model_name="tokens", on_stream=recorder, **options)
        batcher.start()
        made.append(batcher)
        return batcher

    yield build
    pipeline.gate.set()
    for batcher in made:
        for stream in list(batcher._live_streams):
            stream.cancel()
        await batcher.close(GUARD)


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - set by other threads, so no asyncio.Event can signal it
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), GUARD)


async def read_all(stream: StreamItem) -> list[BaseModel]:
    return [event async for event in stream]


async def test_each_step_hands_every_stream_its_chunk(make: Callable[..., Batcher], pipeline: TokenStream) -> None:
    batcher = make()
    streams = [batcher.submit_stream(Prompt(text=t, n=3)) for t in ("a", "b")]
    got = await asyncio.wait_for(asyncio.gather(*(read_all(s) for s in streams)), GUARD)
    assert got == [[Token(token=f"{t}-{k}") for k in range(3)] for t in ("a", "b")]
    assert pipeline.batches == [2]
    assert pipeline.steps == 3
    assert batcher.streams == 0


async def test_a_cancelled_stream_frees_its_slot_and_the_model_stops_working_on_it(
    make: Callable[..., Batcher], pipeline: TokenStream, recorder: Recorder
) -> None:
    batcher = make()
    endless = batcher.submit_stream(Prompt(text="long", n=100_000))
    other = batcher.submit_stream(Prompt(text="short", n=500))
    reading = asyncio.ensure_future(read_all(other))
    first = await asyncio.wait_for(endless.__anext__(), GUARD)
    assert first == Token(token="long-0")
    assert batcher.streams == 2
    await endless.aclose()
    assert batcher.streams == 1  # its slot is free at once
    assert "cancelled" in recorder.outcomes
    await until(lambda: any(0 in c for c in pipeline.cancelled))  # the model was told
    rest = await asyncio.wait_for(reading, GUARD)
    assert len(rest) == 500
    # The model stopped when the short stream ended (the step that says so is the 501st), not after 100,000.
    assert pipeline.steps == 501
    assert recorder.outcomes == ["cancelled", "done"]


async def test_a_reader_that_falls_behind_pauses_its_batch_so_the_server_holds_at_most_the_buffer(
    make: Callable[..., Batcher], pipeline: TokenStream
) -> None:
    batcher = make(stream_buffer=8)
    stream = batcher.submit_stream(Prompt(text="x", n=1000))
    await until(lambda: pipeline.steps >= 8)
    await asyncio.sleep(0.2)  # the model would run ahead now if nothing held it
    assert pipeline.steps <= 9
    assert stream.unread <= 8
    got = await asyncio.wait_for(read_all(stream), GUARD)  # reading lets it go on to the end
    assert len(got) == 1000


async def test_a_reader_that_stays_behind_is_cut_off_and_its_batch_mates_go_on(
    make: Callable[..., Batcher], recorder: Recorder
) -> None:
    batcher = make(stream_buffer=4, timeout_seconds=2.0)  # stall limit: half the timeout
    stuck = batcher.submit_stream(Prompt(text="stuck", n=1000))
    reader = batcher.submit_stream(Prompt(text="reader", n=50))
    got = await asyncio.wait_for(read_all(reader), GUARD)
    assert len(got) == 50
    assert "slow_reader" in recorder.outcomes
    buffered = [await stuck.__anext__() for _ in range(4)]  # what was buffered is still readable...
    assert buffered == [Token(token=f"stuck-{k}") for k in range(4)]
    with pytest.raises(SlowReaderError, match="read nothing"):
        await stuck.__anext__()  # ... then the error


async def test_a_stream_times_out_before_its_first_chunk(make: Callable[..., Batcher], pipeline: TokenStream) -> None:
    batcher = make(timeout_seconds=0.2)
    pipeline.gate.clear()
    stream = batcher.submit_stream(Prompt(text="block", n=2))
    with pytest.raises(RequestTimeoutError, match="request_timeout_seconds"):
        await asyncio.wait_for(stream.__anext__(), GUARD)
    assert batcher.streams == 0
    pipeline.gate.set()


async def test_sync_requests_are_not_kept_waiting_until_a_long_stream_ends(
    make: Callable[..., Batcher], pipeline: TokenStream
) -> None:
    pipeline.step_seconds = 0.002
    batcher = make()
    stream = batcher.submit_stream(Prompt(text="long", n=100_000))
    await asyncio.wait_for(stream.__anext__(), GUARD)
    item = batcher.submit(Prompt(text="sync", n=2))
    result = await asyncio.wait_for(batcher.result(item), GUARD)
    assert isinstance(result, Completion)
    assert result.text == "sync-0 sync-1"
    assert pipeline.steps < 100_000
    await stream.aclose()


async def test_a_stream_that_arrives_during_another_batch_starts_before_that_batch_ends(
    make: Callable[..., Batcher], pipeline: TokenStream
) -> None:
    batcher = make()
    long = batcher.submit_stream(Prompt(text="long", n=100_000))
    await asyncio.wait_for(long.__anext__(), GUARD)
    late = batcher.submit_stream(Prompt(text="late", n=3))
    got = await asyncio.wait_for(read_all(late), GUARD)
    assert got == [Token(token=f"late-{k}") for k in range(3)]
    assert pipeline.batches == [1, 1]
    await long.aclose()


async def test_the_model_failing_mid_stream_ends_every_open_stream_of_its_batch_with_an_error(
    make: Callable[..., Batcher],
) -> None:
    batcher = make()
    streams = [batcher.submit_stream(Prompt(text=t, n=5)) for t in ("fail", "ok")]
    got = await asyncio.wait_for(asyncio.gather(*(read_all(s) for s in streams)), GUARD)
    for events in got:
        assert isinstance(events[0], Token)
        assert isinstance(events[-1], ItemError)
        assert events[-1].kind == "internal"
        assert len(events) == 2


async def test_a_stream_batch_is_observed_once_with_the_streams_it_took(
    make: Callable[..., Batcher], pipeline: TokenStream
) -> None:
    # modalkit_batch_size counts stream batches too: one observation per batch formed, sized by its streams
    # (each of its steps is one model call over them), like a sync batch's one observation.
    observed: list[tuple[str, int, float, float]] = []
    batcher = make(on_batch=lambda model, n, wait, run: observed.append((model, n, wait, run)))
    streams = [batcher.submit_stream(Prompt(text=t, n=4)) for t in ("a", "b", "c")]
    await asyncio.wait_for(asyncio.gather(*(read_all(s) for s in streams)), GUARD)
    assert pipeline.batches == [3]
    await until(lambda: len(observed) >= 1)
    [(model, n, wait, run)] = observed
    assert (model, n) == ("tokens", 3)
    assert wait >= 0.0
    assert run >= 0.0
