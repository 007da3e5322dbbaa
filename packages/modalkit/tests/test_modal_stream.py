"""``/predict_stream`` on Modal, with the real ``modal`` package offline.

modal 1.x refuses a generator under ``@modal.batched``, so streams go through a second class: `ModalStreamService`,
``@modal.concurrent`` and not batched, whose generator method ``process_stream`` feeds each input into serve's
`Batcher` inside the container (one model call advances every stream of the batch). The web endpoint calls it with
``.remote_gen``. Here the class runs through ``.local()``; only `ModalCalls` (Modal's cloud) is replaced.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import httpx
import modal
import modal.exception
import pytest
from modal._serialization import deserialize, serialize  # what Modal does to every input and output
from pydantic import ValidationError

from modalkit import MemoryJobIndex, ModalCalls, create_web_endpoints
from modalkit._web import ModalStreamingRunner
from modalkit.errors import ServiceDefinitionError

from .conftest import FIXTURES, LoadApp

GUARD = 30.0  # seconds: a hung test fails instead of blocking the suite; not a timing assertion


@pytest.fixture
def streams(load_app: LoadApp) -> Iterator[ModuleType]:
    module = load_app("modal_stream_app.py", FIXTURES / "stream.yaml")
    module.TokenStream.batch_sizes.clear()
    yield module
    module.TokenStreams._modalkit_service_class.close_stream_hosts()


def _request(module: ModuleType, text: str, n: int, release: str | None = None) -> Any:
    from modalkit_pipeline import SyncInputModel

    wrapper: Any = SyncInputModel[module.Prompt]  # type: ignore[name-defined]  # the app module's model
    return wrapper(message=module.Prompt(text=text, n=n, release=release))


def test_modal_refuses_a_generator_under_batched() -> None:
    # The fact the split rests on (modal 1.6): a batched function may not be a generator. On a class method the
    # same rule is an assertion in the container's input loop ("generators are not supported with batched
    # inputs"), so it cannot be seen offline there. If a modal release lifts it, one class could do both.
    app = modal.App("stream-contract")
    with pytest.raises(modal.exception.InvalidError, match="cannot return generators"):

        @app.function(serialized=True)
        @modal.batched(max_batch_size=4, wait_ms=10)
        def steps(xs: list[int]) -> Iterator[list[int]]:
            yield xs


def test_the_stream_class_is_concurrent_not_batched_with_one_generator_method(streams: ModuleType) -> None:
    info = streams.TokenStreams._get_class_service_function().info()
    assert info.method_names == ["process_stream"]
    assert info.batching_info is None
    # stream.yaml batches 16: one container must take at least that many streams at once to fill a batch.
    assert info.concurrency_info is not None
    assert info.concurrency_info.max_inputs >= 16
    # The batched class is still the one for sync/batch/async.
    assert streams.Tokens._get_class_service_function().info().method_names == ["process_request"]


def test_local_process_stream_yields_the_chunks_in_order(streams: ModuleType) -> None:
    method = streams.TokenStreams(model_name="tokens").process_stream
    chunks = list(method.local(_request(streams, "tok", 4)))
    assert [c.token for c in chunks] == ["tok-0", "tok-1", "tok-2", "tok-3"]


def test_a_stream_without_chunks_ends_at_once(streams: ModuleType) -> None:
    method = streams.TokenStreams(model_name="tokens").process_stream
    assert list(method.local(_request(streams, "none", 0))) == []


def test_a_malformed_request_is_refused_naming_the_field(streams: ModuleType) -> None:
    method = streams.TokenStreams(model_name="tokens").process_stream
    with pytest.raises(ValidationError, match="text"):
        list(method.local({"message": {"text": "", "n": 2}}))


def test_concurrent_streams_share_one_model_call_per_step(streams: ModuleType, tmp_path: Any) -> None:
    # Like Modal's threads for a @modal.concurrent sync method: four inputs at once, each in its own thread.
    release = tmp_path / "release"
    method = streams.TokenStreams(model_name="tokens").process_stream
    list(method.local(_request(streams, "warm", 0)))  # the enter hook runs once, as before a container's inputs
    streams.TokenStream.batch_sizes.clear()
    results: dict[int, list[str]] = {}

    def run(k: int) -> None:
        results[k] = [c.token for c in method.local(_request(streams, f"s{k}", 3, str(release)))]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    host = streams.TokenStreams._modalkit_service_class.stream_host("tokens")
    assert host is not None
    _wait(lambda: host.batcher.streams == 4)
    release.touch()
    for t in threads:
        t.join(GUARD)
    assert results == {k: [f"s{k}-0", f"s{k}-1", f"s{k}-2"] for k in range(4)}
    # The streams arrived while a batch may already have been open: at most two batches, one with several.
    assert sum(streams.TokenStream.batch_sizes) == 4
    assert max(streams.TokenStream.batch_sizes) >= 2


def test_closing_the_local_generator_cancels_the_stream(streams: ModuleType, tmp_path: Any) -> None:
    method = streams.TokenStreams(model_name="tokens").process_stream
    gen = method.local(_request(streams, "long", 1_000_000))
    assert next(gen).token == "long-0"
    host = streams.TokenStreams._modalkit_service_class.stream_host("tokens")
    assert host is not None
    assert host.batcher.streams == 1
    gen.close()
    _wait(lambda: host.batcher.streams == 0)


def test_a_stream_class_that_is_not_a_stream_service_is_refused(streams: ModuleType) -> None:
    with pytest.raises(ServiceDefinitionError, match="ModalStreamService"):
        create_web_endpoints(streams.Tokens, streams.Prompt, streams.Completion, stream_cls=streams.Tokens)


# --- the web endpoint -------------------------------------------------------------------------------------


class LocalStreamCalls(ModalCalls):
    """Modal's cloud, in this process: ``remote_gen`` runs the generator through ``.local()`` in a thread, with
    the input and every yielded value through Modal's serializer; closing the async iterator closes it."""

    def __init__(self) -> None:
        super().__init__(job_index=MemoryJobIndex())
        self.closed = threading.Event()

    def stream(self, method: Any, request: Any) -> AsyncIterator[Any]:
        return self._gen(method, serialize(request))

    async def _gen(self, method: Any, payload: bytes) -> AsyncIterator[Any]:
        gen = await asyncio.to_thread(lambda: method.local(deserialize(payload, None)))
        done = object()
        try:
            while (item := await asyncio.to_thread(next, gen, done)) is not done:
                yield deserialize(serialize(item), None)
        finally:
            await asyncio.to_thread(gen.close)
            self.closed.set()


@pytest.fixture
async def web(streams: ModuleType) -> AsyncIterator[tuple[httpx.AsyncClient, LocalStreamCalls]]:
    calls = LocalStreamCalls()
    app = create_web_endpoints(
        streams.Tokens, streams.Prompt, streams.Completion, stream_cls=streams.TokenStreams, calls=calls
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://modal", timeout=GUARD) as client:
        yield client, calls


async def _events(response: httpx.Response) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    kind = "message"
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            out.append((kind, json.loads(line.removeprefix("data: "))))
            kind = "message"
    return out


async def test_the_web_endpoint_streams_sse_through_remote_gen(web: tuple[httpx.AsyncClient, Any]) -> None:
    client, _ = web
    async with client.stream("POST", "/predict_stream", json={"text": "w", "n": 3}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await _events(response)
    assert events == [
        ("message", {"token": "w-0"}),
        ("message", {"token": "w-1"}),
        ("message", {"token": "w-2"}),
        ("done", {"status": "success", "chunks": 3}),
    ]


async def test_the_web_endpoint_refuses_bad_input_before_streaming(web: tuple[httpx.AsyncClient, Any]) -> None:
    client, _ = web
    response = await client.post("/predict_stream", json={"text": "", "n": 3})
    assert response.status_code == 422
    assert "text" in response.text


async def test_closing_the_web_stream_closes_the_remote_generator_and_frees_the_slot(streams: ModuleType) -> None:
    # What the route does when the client goes away (httpx's ASGI transport cannot disconnect mid-body; the
    # local e2e tests do that over real HTTP): the runner's stream is closed.
    calls = LocalStreamCalls()
    runner = ModalStreamingRunner(
        streams.Tokens, streams.Completion, stream_cls=streams.TokenStreams, chunk_model=streams.Token, calls=calls
    )
    stream = runner.predict_stream("tokens", streams.Prompt(text="z", n=1_000_000))
    first = await stream.__anext__()
    assert first == streams.Token(token="z-0")
    host = streams.TokenStreams._modalkit_service_class.stream_host("tokens")
    assert host is not None
    assert host.batcher.streams == 1
    await stream.aclose()
    assert calls.closed.is_set()
    await asyncio.to_thread(_wait, lambda: host.batcher.streams == 0)
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_the_openapi_document_has_the_stream_route_with_the_chunk_schema(
    web: tuple[httpx.AsyncClient, Any],
) -> None:
    client, _ = web
    doc = (await client.get("/openapi.json")).json()
    content = doc["paths"]["/predict_stream"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in content
    assert "Token" in json.dumps(doc["components"]["schemas"])


async def test_without_a_stream_class_there_is_no_stream_route(streams: ModuleType) -> None:
    app = create_web_endpoints(streams.Tokens, streams.Prompt, streams.Completion, calls=LocalStreamCalls())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modal") as client:
        doc = (await client.get("/openapi.json")).json()
    assert "/predict_stream" not in doc["paths"]


def _wait(condition: Any) -> None:
    event = threading.Event()
    for _ in range(int(GUARD / 0.01)):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.e2e
def test_modalkit_serve_streams_the_same_app_file(tmp_path: Any) -> None:
    # The app file with its two Modal classes, served on this machine: the LocalRunner streams it.
    from modalkit.testing import serving

    from .conftest import APPS

    with (
        serving(APPS / "modal_stream_app.py", config=FIXTURES / "stream.yaml", cwd=tmp_path) as server,
        httpx.Client(timeout=GUARD) as client,
        client.stream("POST", f"{server.url}/predict_stream", json={"text": "e", "n": 2}) as response,
    ):
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines == [
        'data: {"token":"e-0"}',
        'data: {"token":"e-1"}',
        "event: done",
        'data: {"status": "success", "chunks": 2}',
    ]
