"""The embeddings service as a real `modalkit serve` process, over loopback HTTP (port 0, stopped by PID)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modalkit.testing import ModalkitServer

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent.parent / "app.py"
CONFIG = APP.parent / "modalkit.yaml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalkitServer]:
    with ModalkitServer(APP, config=CONFIG, log_dir=tmp_path_factory.mktemp("embeddings")) as served:
        yield served


@pytest.fixture
def client(server: ModalkitServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_a_query_finds_its_document(client: httpx.Client) -> None:
    response = client.post("/predict_sync", json={"text": "How do I put several requests into one model call?"})

    assert response.status_code == 200
    body = response.json()
    assert len(body["embedding"]) == 384
    assert body["matches"][0]["text"] == "Batching groups many requests into one model call to raise throughput."
    assert len(body["matches"]) == 3


def test_a_batch_where_one_item_fails(client: httpx.Client) -> None:
    response = client.post(
        "/predict_batch", json=[{"text": "a message broker in memory"}, {"text": " "}, {"text": "France's capital"}]
    )

    results = response.json()
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert results[0]["matches"][0]["text"].startswith("Redis")
    assert results[1]["kind"] == "input"
    assert results[2]["matches"][0]["text"].startswith("Paris")


def test_bad_input_is_a_422(client: httpx.Client) -> None:
    assert client.post("/predict_sync", json={"words": "x"}).status_code == 422
    blank = client.post("/predict_sync", json={"text": "  "})
    assert blank.status_code == 422
    assert blank.json()["detail"][0]["msg"] == "text is blank: nothing to embed"


def test_concurrent_requests_are_batched(client: httpx.Client, server: ModalkitServer) -> None:
    queries = [f"cloud GPUs for python number {i}" for i in range(48)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(lambda q: httpx.post(f"{server.url}/predict_sync", json={"text": q}).json(), queries))

    assert all(b["matches"][0]["text"].startswith("Modal runs Python") for b in bodies)
    metrics = client.get("/metrics").text
    sizes = [line for line in metrics.splitlines() if line.startswith("modalkit_batch_size_sum")]
    counts = [line for line in metrics.splitlines() if line.startswith("modalkit_batch_size_count")]
    assert sizes
    assert counts
    assert float(sizes[0].split()[-1]) > float(counts[0].split()[-1])  # some batch held more than one text
