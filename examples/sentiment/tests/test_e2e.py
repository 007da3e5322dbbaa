"""The sentiment service as a real server process: every route, over loopback HTTP.

Started the way a user starts it, ``modalkit serve examples/sentiment/app.py`` (here ``python -m modalkit serve``
on port 0, so the test runs from any environment that has the packages), in its own process group, stopped by
its PID. The app file is the Modal app; ``modalkit serve`` runs it on this machine.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modalkit.testing import ModalkitServer

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent.parent / "app.py"
CONFIG = APP.parent / "modalkit.yaml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalkitServer]:
    logs = tmp_path_factory.mktemp("sentiment")
    with ModalkitServer(APP, config=CONFIG, log_dir=logs) as served:  # ready on return: /ready said 200
        yield served


@pytest.fixture
def client(server: ModalkitServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}


def test_predict_sync_gives_a_real_prediction(client: httpx.Client) -> None:
    happy = client.post("/predict_sync", json={"text": "modalkit makes serving models easy and fun"})
    sad = client.post("/predict_sync", params={"model_name": "vader"}, json={"text": "this is awful, I hate it"})

    assert happy.status_code == 200
    assert happy.json()["label"] == "positive"
    assert happy.json()["status"] == "success"
    assert sad.json()["label"] == "negative"
    assert -1 <= sad.json()["compound"] < 0


def test_bad_input_is_a_422_naming_the_field(client: httpx.Client) -> None:
    empty = client.post("/predict_sync", json={"text": ""})
    wrong = client.post("/predict_sync", json={"words": "hello"})

    assert empty.status_code == 422
    assert empty.json()["detail"][0]["loc"] == ["body", "text"]
    assert wrong.status_code == 422
    assert ["body", "text"] in [e["loc"] for e in wrong.json()["detail"]]
    assert "Traceback" not in empty.text + wrong.text


def test_an_unknown_model_is_a_404(client: httpx.Client) -> None:
    response = client.post("/predict_sync", params={"model_name": "bert"}, json={"text": "hi"})

    assert response.status_code == 404
    assert "vader" in response.json()["detail"]


def test_a_batch_where_one_item_fails_and_the_others_succeed(client: httpx.Client) -> None:
    response = client.post("/predict_batch", json=[{"text": "I love it"}, {"text": "   "}, {"text": "I hate it"}])

    assert response.status_code == 200
    results = response.json()
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert results[0]["label"] == "positive"
    assert results[1]["error"] == "text is blank: nothing to score"
    assert results[1]["kind"] == "input"
    assert results[2]["label"] == "negative"


def test_a_text_the_pipeline_refuses_is_a_422_with_its_message(client: httpx.Client) -> None:
    response = client.post("/predict_sync", json={"text": "   "})

    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"type": "item_error", "loc": ["body"], "msg": "text is blank: nothing to score"}]
    }


def test_an_async_job_followed_to_completion(client: httpx.Client) -> None:
    accepted = client.post(
        "/predict_async", json={"message": {"text": "what a lovely day"}, "success_queue": "results", "meta": {"n": 1}}
    )
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]

    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()
        if status["status"] in ("success", "error"):
            break
        assert status["status"] in ("pending", "running")
        time.sleep(0.02)
    assert status["status"] == "success"
    assert status["job_id"] == job_id
    assert status["result"]["label"] == "positive"
    assert client.get("/jobs/not-a-job").status_code == 404


def test_the_request_id_is_taken_or_generated(client: httpx.Client, server: ModalkitServer) -> None:
    given = client.post("/predict_sync", json={"text": "fine"}, headers={"x-request-id": "e2e-trace-42"})
    generated = client.get("/health")
    injected = client.get("/health", headers={"x-request-id": "a b\tc"})

    assert given.headers["x-request-id"] == "e2e-trace-42"
    assert generated.headers["x-request-id"]
    assert injected.headers["x-request-id"] != "a b\tc"
    deadline = time.monotonic() + 10
    while "e2e-trace-42" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = [json.loads(line) for line in server.stderr().splitlines() if "e2e-trace-42" in line]
    assert record["logger"] == "modalkit.access"
    assert record["model"] == "vader"
    assert record["status"] == 200
    assert record["batch_size"] >= 1
    assert record["queue_wait_ms"] >= 0


def test_metrics_show_the_batch_size_histogram(client: httpx.Client) -> None:
    client.post("/predict_batch", json=[{"text": f"good {i}"} for i in range(40)])

    text = client.get("/metrics").text

    assert 'modalkit_batch_size_bucket{le="32.0",model="vader"}' in text
    assert 'modalkit_batch_size_count{model="vader"}' in text
    assert 'modalkit_requests_total{route="/predict_batch",status="200"}' in text
    assert 'modalkit_queue_depth{model="vader"}' in text


def test_concurrent_predict_sync_calls_share_batches(server: ModalkitServer) -> None:
    def histogram() -> tuple[float, float]:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        ones = count = 0.0
        for line in text.splitlines():
            if line.startswith('modalkit_batch_size_bucket{le="1.0",model="vader"}'):
                ones = float(line.rsplit(" ", 1)[1])
            elif line.startswith('modalkit_batch_size_count{model="vader"}'):
                count = float(line.rsplit(" ", 1)[1])
        return ones, count

    def burst(n: int) -> list[int]:
        barrier = threading.Barrier(n)
        codes: list[int] = []

        def call(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                barrier.wait()
                codes.append(c.post("/predict_sync", json={"text": f"nice {i}"}).status_code)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return codes

    shared = False
    for _ in range(10):  # VADER is fast: a burst usually, not always, lands in one event-loop turn
        ones_before, count_before = histogram()
        assert burst(32) == [200] * 32
        ones, count = histogram()
        if (count - count_before) > (ones - ones_before):
            shared = True
            break
    assert shared, "no batch with more than one request was observed"


def test_the_openapi_document_shows_the_sentiment_models(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()

    sync = doc["paths"]["/predict_sync"]["post"]
    assert sync["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TextInput"}
    assert sync["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SentimentOutput"
    }
    assert "label" in doc["components"]["schemas"]["SentimentOutput"]["properties"]


def test_sigterm_delivers_every_accepted_async_job_to_sqs(aws_env: Any, tmp_path: Path) -> None:
    from modalkit_queue import receive_sqs

    overlay = tmp_path / "sqs.yaml"
    overlay.write_text(
        "app_settings:\n"
        "  queue_config:\n"
        "    backend: sqs\n"
        "    sqs: {create_missing: true, region_name: us-east-1}\n"
        f"    dead_letter: {{file: {tmp_path / 'dead.jsonl'}}}\n"
    )
    served = ModalkitServer(APP, config=[CONFIG, overlay], log_dir=tmp_path).start()
    try:
        accepted: list[str] = []
        with httpx.Client(base_url=served.url, timeout=30) as client:
            for i in range(150):
                body = {"message": {"text": f"review {i}: good"}, "success_queue": "sentiment-results"}
                response = client.post("/predict_async", json=body)
                assert response.status_code == 202
                accepted.append(response.json()["job_id"])
        served.signal(signal.SIGTERM)
        code = served.wait(120)
    finally:
        served.stop()

    assert code in (0, -signal.SIGTERM)
    messages = [json.loads(m) for m in receive_sqs("sentiment-results", max_messages=1000, wait_seconds=1)]
    assert sorted(m["job_id"] for m in messages) == sorted(accepted)
    assert all(m["label"] == "positive" for m in messages)
    assert not (tmp_path / "dead.jsonl").exists()
