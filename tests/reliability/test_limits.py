"""Every limit from ``server_config`` and ``queue_config`` holds on the real server, at its boundary.

The sentiment example is served with small limits (``max_body_bytes`` 64 KiB, ``max_batch_items`` 8,
``max_json_depth`` 8; see ``LIMITS``); what VADER cannot show (a model that hangs past the timeout, a model slow
enough for queues to fill) is shown by the misbehaving test model under ``apps/faulty``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.reliability.reliability_support import (
    AWS_ENV,
    FAULTY_APP,
    FAULTY_CONFIG,
    MAX_BATCH_ITEMS,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    Report,
    check_json_error,
    dead_letters,
    start_server,
    wait_for,
    write_overlay,
)

from modalkit_serve.testing import ServedProcess

pytestmark = pytest.mark.reliability


def nested(depth: int) -> Any:
    """A JSON value ``depth`` levels of objects deep."""
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


# -- body size, batch items, nesting: the sentiment example -------------------------------------------------------


@pytest.fixture(scope="module")
def client(sentiment: ServedProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sentiment.url, timeout=30) as c:
        yield c


def test_a_body_of_exactly_max_body_bytes_is_served_and_one_byte_more_is_a_413(client: httpx.Client) -> None:
    body = b'{"text": "right at the limit"}'
    at_limit = body + b" " * (MAX_BODY_BYTES - len(body))  # JSON allows trailing whitespace

    served = client.post("/predict_sync", content=at_limit, headers={"content-type": "application/json"})
    refused = client.post("/predict_sync", content=at_limit + b" ", headers={"content-type": "application/json"})

    assert served.status_code == 200, served.text
    assert refused.status_code == 413
    assert check_json_error(refused) is None
    assert str(MAX_BODY_BYTES) in refused.json()["detail"]


def test_the_body_limit_holds_on_routes_served_by_fastapi_too(client: httpx.Client) -> None:
    # GET /jobs/{id} and unknown paths are FastAPI's, not the fast path's: the limit is checked before either.
    for method, path in (("GET", "/jobs/abc"), ("POST", "/nowhere"), ("POST", "/health")):
        response = client.request(method, path, content=b"x" * (MAX_BODY_BYTES + 1))
        assert response.status_code == 413, (method, path, response.status_code)
        assert check_json_error(response) is None


def test_max_batch_items_is_served_and_one_more_is_a_422_naming_the_limit(client: httpx.Client) -> None:
    items = [{"text": f"item {i} is good"} for i in range(MAX_BATCH_ITEMS)]

    served = client.post("/predict_batch", json=items)
    refused = client.post("/predict_batch", json=[*items, {"text": "one too many"}])

    assert served.status_code == 200
    assert len(served.json()) == MAX_BATCH_ITEMS
    assert refused.status_code == 422
    [problem] = refused.json()["detail"]
    assert problem["type"] == "too_long"
    assert problem["loc"] == ["body"]
    assert f"at most {MAX_BATCH_ITEMS} items" in problem["msg"]


def test_max_json_depth_is_served_and_one_level_more_is_a_422(client: httpx.Client) -> None:
    # {"message": ..., "meta": <d levels>}: the body itself is one level, "meta" holds the rest.
    at_limit = {"message": {"text": "deep but allowed"}, "meta": nested(MAX_JSON_DEPTH - 1)}
    too_deep = {"message": {"text": "one level too deep"}, "meta": nested(MAX_JSON_DEPTH)}

    served = client.post("/predict_async", json=at_limit)
    refused = client.post("/predict_async", json=too_deep)

    assert served.status_code == 202, served.text
    assert refused.status_code == 422
    assert refused.json()["detail"] == [
        {"type": "json_depth", "loc": ["body"], "msg": f"JSON nested deeper than {MAX_JSON_DEPTH}"}
    ]


# -- timeout: a model that hangs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hanging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    """The faulty model: ``hang`` stalls a batch for 2 s, the timeout is 1 s."""
    logs = tmp_path_factory.mktemp("faulty-timeout")
    server = start_server(FAULTY_APP, FAULTY_CONFIG, logs)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict_sync", {"text": "please hang"}),
        ("/predict_batch", [{"text": "fine"}, {"text": "please hang"}, {"text": "fine too"}]),
    ],
)
def test_a_request_past_the_timeout_is_a_504_in_json_and_the_server_stays_healthy(
    hanging: ServedProcess, path: str, body: Any
) -> None:
    with httpx.Client(base_url=hanging.url, timeout=30) as client:
        timed_out = client.post(path, json=body)
        health = client.get("/health")  # while the model is still stuck
        # Once the stuck batch ends, the model answers again (bounded wait).
        wait_for(lambda: client.post("/predict_sync", json={"text": "ok"}).status_code == 200, 15, "recovery")
        after = client.post("/predict_sync", json={"text": "afterwards"})

    assert timed_out.status_code == 504
    assert check_json_error(timed_out) is None
    assert "request_timeout_seconds" in timed_out.json()["detail"]
    assert health.status_code == 200
    assert after.json() == {"status": "success", "error": None, "length": len("afterwards")}


# -- queue and outbox: a slow model, a queue backend that never answers ---------------------------------------------


async def burst(url: str, path: str, bodies: list[Any]) -> list[httpx.Response]:
    """All requests at once, on separate connections."""
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        return list(await asyncio.gather(*(client.post(path, json=b) for b in bodies)))


def refused_properly(response: httpx.Response) -> bool:
    return (
        response.status_code == 503
        and check_json_error(response) is None
        and int(response.headers.get("retry-after", "0")) >= 1
    )


async def test_overload_is_a_503_with_retry_after_and_no_accepted_job_is_lost(
    tmp_path: Path, free_port: Any, report: Report
) -> None:
    dead = tmp_path / "dead.jsonl"
    overlay = write_overlay(
        tmp_path / "slow.yaml",
        f"""\
app_settings:
  batch_config: {{max_batch_size: 2}}  # 2 items per 300 ms: a burst of 30 cannot all fit, however it arrives
  server_config:
    max_queue_size: 6
    request_timeout_seconds: 30
    drain_timeout_seconds: 3
  queue_config:
    backend: sqs
    sqs: {{endpoint_url: "http://127.0.0.1:{free_port()}", region_name: us-east-1}}
    outbox_size: 3
    retry: {{max_attempts: 100, initial_backoff_seconds: 1, max_backoff_seconds: 1}}
    dead_letter: {{file: {dead}}}
model_settings:
  model_entries:
    faulty: {{batch_sleep_ms: 300}}
""",
    )
    # Nothing listens on that SQS endpoint: results stay in the outbox until shutdown dead-letters them.
    server = await asyncio.to_thread(start_server, FAULTY_APP, FAULTY_CONFIG, tmp_path, overlay, env=AWS_ENV)
    try:
        sync = await burst(server.url, "/predict_sync", [{"text": f"sync {i}"} for i in range(30)])
        jobs = await burst(
            server.url,
            "/predict_async",
            [{"message": {"text": f"job {i}"}, "success_queue": "results"} for i in range(30)],
        )
        server.signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.wait, 60)
    finally:
        await asyncio.to_thread(server.stop)

    sync_codes = [r.status_code for r in sync]
    assert set(sync_codes) == {200, 503}, sync_codes
    assert all(refused_properly(r) for r in sync if r.status_code == 503)
    accepted = [r.json()["job_id"] for r in jobs if r.status_code == 202]
    refused = [r for r in jobs if r.status_code != 202]
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled once it has shut down
    dead_ids = [record["job_id"] for record in dead_letters(dead)]
    assert sorted(dead_ids) == sorted(accepted), "every accepted job is dead-lettered, none is lost"
    assert 1 <= len(accepted) <= 3, f"never more accepted than the outbox can hold (accepted {len(accepted)})"
    assert refused
    assert all(refused_properly(r) for r in refused)
    assert any("outbox" in r.json()["detail"] for r in refused)
    report.record(
        "overload (queue and outbox full)",
        "30 concurrent sync and 30 async requests against max_queue_size 6 and outbox_size 3, queue endpoint "
        "down, then SIGTERM",
        requests=len(sync) + len(jobs),
        errors=0,
        refused_503=sync_codes.count(503) + len(refused),
        jobs_accepted=len(accepted),
        jobs_delivered=0,
        jobs_dead_lettered=len(dead_ids),
    )
