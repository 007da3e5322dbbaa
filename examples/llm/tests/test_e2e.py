"""The LLM service as a real `modalkit serve` process, over loopback HTTP (port 0, stopped by PID).

The stream is read with a small SSE reader over httpx, event by event as the bytes arrive."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modalkit.testing import ModalkitServer
from modalkit_serve.testing import sse_events

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent.parent / "app.py"
CONFIG = APP.parent / "modalkit.yaml"
GUARD = 60.0  # seconds: a hung test fails instead of blocking the suite; not a timing assertion


def sse(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event type, decoded data) of each Server-Sent Event, as they arrive."""
    return sse_events(response.iter_lines())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalkitServer]:
    with ModalkitServer(APP, config=CONFIG, log_dir=tmp_path_factory.mktemp("llm")) as served:
        yield served


@pytest.fixture
def client(server: ModalkitServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=GUARD) as c:
        yield c


def test_tokens_stream_in_order_the_first_before_the_last_then_done(client: httpx.Client) -> None:
    body = {"text": "The server streams each", "temperature": 0.0, "max_tokens": 400}
    arrived: list[float] = []
    with client.stream("POST", "/predict_stream", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response)
        first = next(events)
        arrived.append(time.perf_counter())
        rest = []
        for event in events:
            rest.append(event)
            arrived.append(time.perf_counter())

    assert first == ("message", {"index": 0, "text": " token"})
    assert arrived[0] < arrived[-2]  # the first token was read before the last one arrived (an order, not a speed)
    tokens = [first[1], *(data for kind, data in rest if kind == "message")]
    assert [t["index"] for t in tokens] == list(range(400))
    assert rest[-1] == ("done", {"status": "success", "chunks": 400})
    assert "".join(t["text"] for t in tokens).startswith(" token to the model on a CPU answers quickly")


def test_the_sync_route_gives_the_joined_stream(client: httpx.Client) -> None:
    body = {"text": "A model", "temperature": 0.9, "seed": 7, "max_tokens": 40}
    with client.stream("POST", "/predict_stream", json=body) as response:
        streamed = "".join(data["text"] for kind, data in sse(response) if kind == "message")
    joined = client.post("/predict_sync", json=body)

    assert joined.status_code == 200
    assert joined.json()["text"] == streamed
    assert joined.json()["tokens"] > 0


def test_concurrent_streams_each_get_their_own_tokens_in_order(server: ModalkitServer) -> None:
    def body(seed: int) -> dict[str, Any]:
        return {"text": "Batching lets", "seed": seed, "max_tokens": 64, "temperature": 1.0}

    def streamed(seed: int) -> str:
        with httpx.Client(timeout=GUARD) as c, c.stream("POST", f"{server.url}/predict_stream", json=body(seed)) as r:
            tokens = [data for kind, data in sse(r) if kind == "message"]
        assert [t["index"] for t in tokens] == list(range(len(tokens)))
        return "".join(t["text"] for t in tokens)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        together = list(pool.map(streamed, range(24)))
    alone = [httpx.post(f"{server.url}/predict_sync", json=body(s), timeout=GUARD).json()["text"] for s in range(24)]

    assert together == alone  # streams batched together never mix their tokens
    assert len(set(together)) > 1


def test_bad_input_is_a_422_that_names_the_field(client: httpx.Client) -> None:
    blank = client.post("/predict_stream", json={"text": "   "})
    assert blank.status_code == 422
    assert "text is blank: nothing to continue" in blank.json()["detail"][0]["msg"]
    too_many = client.post("/predict_sync", json={"text": "x", "max_tokens": 10_000})
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"][-1] == "max_tokens"
