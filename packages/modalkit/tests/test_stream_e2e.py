"""``POST /predict_stream`` over real HTTP against a ``modalkit serve`` process, read with an SSE reader over httpx:
chunks arrive as the model makes them, in order, then a done event; a client that disconnects cancels its stream,
its slot is freed (``modalkit_streams_open``) and the model stops working on it (``modalkit_stream_chunks``)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modalkit.testing import ModalkitServer, serving
from modalkit_serve.testing import sse_events

from .conftest import APPS, FIXTURES

GUARD = 30.0  # seconds: a hung test fails instead of blocking the suite; not a timing assertion


def sse(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event type, decoded data) of each Server-Sent Event, as they arrive."""
    return sse_events(response.iter_lines())


def metric(server: ModalkitServer, name: str, labels: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=GUARD).text
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalkitServer]:
    folder = tmp_path_factory.mktemp("stream-e2e")
    with serving(APPS / "stream_service.py", config=FIXTURES / "stream.yaml", cwd=folder) as served:
        yield served


@pytest.mark.e2e
def test_chunks_arrive_as_they_are_made_in_order_then_done(server: ModalkitServer, tmp_path: Path) -> None:
    release = tmp_path / "release"
    body = {"text": "tok", "n": 5, "release": str(release)}
    with (
        httpx.Client(timeout=GUARD) as client,
        client.stream("POST", f"{server.url}/predict_stream", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response)
        # The model holds its last token until the file exists: the first four can only have arrived here if
        # the server sent them while it was still working on the stream.
        early = [next(events) for _ in range(4)]
        assert early == [("message", {"token": f"tok-{k}"}) for k in range(4)]
        release.touch()
        rest = list(events)
    assert rest == [("message", {"token": "tok-4"}), ("done", {"status": "success", "chunks": 5})]


@pytest.mark.e2e
def test_a_client_that_disconnects_frees_its_slot_and_the_model_stops(server: ModalkitServer) -> None:
    labels = 'model="tokens",outcome="cancelled"'
    cancelled_before = metric(server, "modalkit_streams_total", labels)
    with (
        httpx.Client(timeout=GUARD) as client,
        client.stream("POST", f"{server.url}/predict_stream", json={"text": "endless", "n": 1_000_000}) as response,
    ):
        events = sse(response)
        assert [next(events) for _ in range(3)][-1] == ("message", {"token": "endless-2"})
        assert metric(server, "modalkit_streams_open", 'model="tokens"') == 1
    # The connection is closed: the server notices, cancels the stream and frees its slot.
    deadline = time.monotonic() + GUARD
    while metric(server, "modalkit_streams_open", 'model="tokens"') != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metric(server, "modalkit_streams_open", 'model="tokens"') == 0
    assert metric(server, "modalkit_streams_total", labels) == cancelled_before + 1
    # ... and the model stopped making chunks for it (a step every 5 ms would add dozens in this pause).
    made = metric(server, "modalkit_stream_chunks_total", 'model="tokens"')
    time.sleep(0.3)
    assert metric(server, "modalkit_stream_chunks_total", 'model="tokens"') == made
    status, _ = server.post("/predict_sync", {"text": "after", "n": 2})
    assert status == 200
