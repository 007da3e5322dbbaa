"""POST /predict_stream over the app (in process): Server-Sent Events, one JSON chunk per event, a final done or
error event; refusals before the first chunk are ordinary JSON errors; streams share model calls; auth, limits and
the OpenAPI document as on the other routes. (Incremental delivery and disconnects over real HTTP: test_stream_e2e.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from modalkit_auth import Authenticator
from modalkit_queue import MemoryBackend
from modalkit_serve import LocalRunner, create_app
from modalkit_serve.testing import sse_events
from serve_support import ToyInput, ToyOutput, ToyPipeline, settings_with
from stream_support import Completion, Prompt, Token, TokenStream

GUARD = 10.0
KEY = "k3y-for-stream-tests"


@pytest.fixture(params=[True, False], ids=["asgi-fast-path", "fastapi-routes"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@asynccontextmanager
async def serve(
    *, fast_path: bool = True, authenticator: Authenticator | None = None, server: dict[str, Any] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, LocalRunner]]:
    settings = settings_with(models={"tokens": {}}, server=server, batch={"max_batch_size": 8, "wait_ms": 5})
    runner = LocalRunner(TokenStream, settings, queue_backend=MemoryBackend())
    app = create_app(
        runner, Prompt, Completion, settings, authenticator, fast_path=fast_path, chunk_model=TokenStream.chunk_model()
    )
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), GUARD)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client, runner


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - set by other threads, so no asyncio.Event can signal it
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), GUARD)


def sse_body(text: str) -> list[tuple[str, Any]]:
    """(event type, decoded data) of each event of a whole SSE body."""
    return list(sse_events(text.split("\n")))


async def test_a_stream_is_server_sent_events_one_json_chunk_each_then_done(fast_path: bool) -> None:
    async with serve(fast_path=fast_path) as (client, _):
        response = await client.post("/predict_stream", json={"text": "hi", "n": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert "x-request-id" in response.headers
    assert sse_body(response.text) == [
        ("message", {"token": "hi-0"}),
        ("message", {"token": "hi-1"}),
        ("message", {"token": "hi-2"}),
        ("done", {"status": "success", "chunks": 3}),
    ]


async def test_streams_waiting_together_share_each_model_call(fast_path: bool) -> None:
    async with serve(fast_path=fast_path) as (client, runner):
        pipeline = runner.worker("tokens").pipeline
        assert isinstance(pipeline, TokenStream)
        pipeline.gate.clear()
        first = asyncio.ensure_future(client.post("/predict_stream", json={"text": "block", "n": 2}))
        await until(lambda: bool(pipeline.batches))
        others = [
            asyncio.ensure_future(client.post("/predict_stream", json={"text": f"s{i}", "n": 4})) for i in range(4)
        ]
        await until(lambda: runner.queue_depths()["tokens"] == 4)
        pipeline.gate.set()
        answers = await asyncio.wait_for(asyncio.gather(first, *others), GUARD)
    assert pipeline.batches == [1, 4]  # the four waiting streams ran as one batch
    assert pipeline.steps == 2 + 4  # one model call per step for the whole batch, not one per stream
    for i, answer in enumerate(answers[1:]):
        assert [data for _, data in sse_body(answer.text)[:-1]] == [{"token": f"s{i}-{k}"} for k in range(4)]


async def test_an_error_mid_stream_ends_it_with_an_error_event_after_the_chunks_sent(fast_path: bool) -> None:
    async with serve(fast_path=fast_path) as (client, _):
        response = await client.post("/predict_stream", json={"text": "fail", "n": 5})
        after = await client.post("/predict_stream", json={"text": "ok", "n": 1})
    assert response.status_code == 200
    events = sse_body(response.text)
    assert events[0] == ("message", {"token": "fail-0"})
    kind, data = events[-1]
    assert kind == "error"
    assert data["status"] == "error"
    assert data["kind"] == "internal"
    assert "the model broke mid-stream" in data["detail"]
    assert "Traceback" not in response.text
    assert len(events) == 2
    assert sse_body(after.text)[-1] == ("done", {"status": "success", "chunks": 1})


async def test_refusals_before_the_first_chunk_are_plain_json_errors(fast_path: bool) -> None:
    async with serve(fast_path=fast_path) as (client, _):
        refused = await client.post("/predict_stream", json={"text": "refuse"})
        invalid = await client.post("/predict_stream", json={"text": ""})
        unknown = await client.post("/predict_stream?model_name=nope", json={"text": "a"})
        form = await client.post("/predict_stream", content=b"text=a", headers={"content-type": "text/plain"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0] == {"type": "item_error", "loc": ["body"], "msg": "this prompt is refused"}
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "text"]
    assert unknown.status_code == 404
    assert form.status_code == 415
    for response in (refused, invalid, unknown, form):
        assert response.headers["content-type"] == "application/json"


async def test_an_empty_stream_is_just_done(fast_path: bool) -> None:
    async with serve(fast_path=fast_path) as (client, _):
        response = await client.post("/predict_stream", json={"text": "x", "n": 0})
    assert sse_body(response.text) == [("done", {"status": "success", "chunks": 0})]


async def test_the_body_limit_applies(fast_path: bool) -> None:
    async with serve(fast_path=fast_path, server={"max_body_bytes": 64}) as (client, _):
        response = await client.post("/predict_stream", json={"text": "x" * 100})
    assert response.status_code == 413


async def test_a_stream_needs_the_api_key(fast_path: bool) -> None:
    async with serve(fast_path=fast_path, authenticator=Authenticator(keys=[KEY])) as (client, _):
        missing = await client.post("/predict_stream", json={"text": "a"})
        right = await client.post("/predict_stream", json={"text": "a"}, headers={"x-api-key": KEY})
    assert missing.status_code == 401
    assert right.status_code == 200
    assert sse_body(right.text)[-1][0] == "done"


async def test_a_stream_times_out_before_its_first_chunk_with_a_504() -> None:
    async with serve(server={"request_timeout_seconds": 0.2}) as (client, runner):
        pipeline = runner.worker("tokens").pipeline
        assert isinstance(pipeline, TokenStream)
        pipeline.gate.clear()
        try:
            response = await client.post("/predict_stream", json={"text": "block"})
        finally:
            pipeline.gate.set()
    assert response.status_code == 504


async def test_openapi_documents_the_stream_with_its_chunk_schema() -> None:
    async with serve() as (client, _):
        doc = (await client.get("/openapi.json")).json()
    operation = doc["paths"]["/predict_stream"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Prompt"}
    stream = operation["responses"]["200"]["content"]["text/event-stream"]
    chunk, done, error = stream["itemSchema"]["oneOf"]
    assert chunk["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/Token"}
    assert done["properties"]["event"] == {"const": "done"}
    assert error["properties"]["event"] == {"const": "error"}
    assert error["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/StreamError"}
    assert doc["components"]["schemas"]["Token"]["properties"]["token"]["type"] == "string"
    assert "done" in operation["responses"]["200"]["description"]
    assert Token.__name__ in doc["components"]["schemas"]


async def test_a_pipeline_that_does_not_stream_has_no_stream_route() -> None:
    settings = settings_with(models={"toy": {}})
    runner = LocalRunner(ToyPipeline, settings, queue_backend=MemoryBackend())
    app = create_app(runner, ToyInput, ToyOutput, settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), GUARD)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.post("/predict_stream", json={"text": "a"})
            doc = (await client.get("/openapi.json")).json()
    assert response.status_code in (404, 405)
    assert "/predict_stream" not in doc["paths"]
