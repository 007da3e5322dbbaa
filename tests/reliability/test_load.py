"""64 concurrent clients against the served example for a bounded time: zero errors, every job accounted for,
memory flat.

``modalkit serve examples/sentiment/app.py`` (access log on, as shipped) delivers async results to taskiq on a
real ``redis-server``. The clients mix ``/predict_sync``, ``/predict_batch`` (with a blank text the model fails
on, which must fail alone) and ``/predict_async`` (some with blank text, whose result goes to the failure queue),
each job followed at ``/jobs/{id}`` until it is done. After the run, every accepted job is read back from Redis.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.reliability.reliability_support import (
    SENTIMENT_APP,
    SENTIMENT_CONFIG,
    Load,
    Report,
    dead_letters,
    job_ids,
    metric,
    rss_kib,
    run_load,
    start_server,
    write_overlay,
)

from modalkit_queue import TaskiqConsumer
from modalkit_serve.testing import ServedProcess

pytestmark = pytest.mark.reliability

CLIENTS = 64
WARM_UP_SECONDS = 3.0
LOAD_SECONDS = 10.0
MAX_REQUESTS_PER_CLIENT = 2_000  # a second bound besides the time
MEMORY_GROWTH_BOUND = 0.10
RESULTS, FAILURES = "reliability-results", "reliability-failures"
LABELS = {"positive", "negative", "neutral"}


async def mixed_request(client: httpx.AsyncClient, n: int, load: Load) -> None:
    """A quarter async, a quarter batches of four, half sync; every 40th async job and every batch has a blank
    text the model fails on."""
    kind = n % 4
    if kind == 0:
        text = "   " if n % 40 == 0 else f"async review {n}: lovely"
        body = {"message": {"text": text}, "success_queue": RESULTS, "failure_queue": FAILURES, "meta": {"n": n}}
        response = await client.post("/predict_async", json=body)
        load.statuses[response.status_code] += 1
        load.by_kind["async"] += 1
        if response.status_code != 202:
            load.error(f"async {response.status_code}: {response.text[:200]}")
            return
        job_id = response.json()["job_id"]
        load.accepted.append(job_id)
        # Follow the job at /jobs/{id} until it is done, as a client would (bounded).
        for _ in range(500):
            status = await client.get(f"/jobs/{job_id}")
            load.statuses[status.status_code] += 1
            state = status.json().get("status") if status.status_code == 200 else f"http {status.status_code}"
            if state not in ("pending", "running"):
                break
            await asyncio.sleep(0.005)
        expected = "error" if n % 40 == 0 else "success"
        if state == expected:
            load.by_kind[f"job_{state}"] += 1
        else:
            load.error(f"job {job_id}: {state}, expected {expected}")
    elif kind == 1:
        texts = [f"batch {n}: great", "   ", f"batch {n}: terrible", f"batch {n}: fine"]
        response = await client.post("/predict_batch", json=[{"text": t} for t in texts])
        load.statuses[response.status_code] += 1
        load.by_kind["batch"] += 1
        results = response.json() if response.status_code == 200 else None
        if not isinstance(results, list) or [r.get("status") for r in results] != [
            "success",
            "error",
            "success",
            "success",
        ]:
            load.error(f"batch {response.status_code}: {response.text[:200]}")
        else:
            load.items += len(results)
    else:
        response = await client.post("/predict_sync", json={"text": f"sync review {n}: not bad at all"})
        load.statuses[response.status_code] += 1
        load.by_kind["sync"] += 1
        if response.status_code != 200 or response.json().get("label") not in LABELS:
            load.error(f"sync {response.status_code}: {response.text[:200]}")
        else:
            load.items += 1


async def read_back(broker_url: str, expected: int, deadline: float) -> dict[str, list[str]]:
    """Job ids read from both queues (each queue read until everything expected arrived, or the deadline)."""
    found: dict[str, list[str]] = {RESULTS: [], FAILURES: []}
    async with TaskiqConsumer(broker_url, RESULTS) as results, TaskiqConsumer(broker_url, FAILURES) as failures:
        while time.monotonic() < deadline:
            got_results = await results.receive(max_messages=500, wait_seconds=0.2)
            got_failures = await failures.receive(max_messages=500, wait_seconds=0.2)
            found[RESULTS].extend(job_ids(got_results))
            found[FAILURES].extend(job_ids(got_failures))
            if len(set(found[RESULTS]) | set(found[FAILURES])) >= expected and not got_results and not got_failures:
                break
    return found


async def test_64_clients_for_ten_seconds_lose_nothing_and_leak_nothing(
    redis_server: Any, tmp_path: Path, report: Report
) -> None:
    dead = tmp_path / "dead.jsonl"
    overlay = write_overlay(
        tmp_path / "taskiq.yaml",
        f"""\
app_settings:
  queue_config:
    backend: taskiq
    broker_url: {redis_server.url}
    dead_letter: {{file: {dead}}}
  server_config:
    # A bounded job store, full by the end of the warm-up, so memory can reach its steady state: with the
    # defaults (100,000 jobs kept for an hour) the run would measure the store filling, not a leak.
    max_jobs: 500
""",
    )
    server: ServedProcess = await asyncio.to_thread(
        start_server, SENTIMENT_APP, SENTIMENT_CONFIG, tmp_path, overlay, log_level="INFO"
    )
    try:
        warm = await run_load(
            server.url,
            mixed_request,
            clients=CLIENTS,
            seconds=WARM_UP_SECONDS,
            max_requests_per_client=MAX_REQUESTS_PER_CLIENT,
        )
        rss_warm = rss_kib(server.pid)
        load = await run_load(
            server.url,
            mixed_request,
            clients=CLIENTS,
            seconds=LOAD_SECONDS,
            max_requests_per_client=MAX_REQUESTS_PER_CLIENT,
        )
        rss_run = rss_kib(server.pid)
        accepted = warm.accepted + load.accepted
        delivered = await read_back(redis_server.url, len(accepted), time.monotonic() + 90)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            metrics = (await client.get("/metrics")).text
        rss_after = rss_kib(server.pid)
    finally:
        await asyncio.to_thread(server.stop)

    delivered_ids = set(delivered[RESULTS]) | set(delivered[FAILURES])
    dead_ids = {record["job_id"] for record in dead_letters(dead)}
    report.record(
        "load",
        f"{CLIENTS} concurrent clients, {LOAD_SECONDS:g} s after a {WARM_UP_SECONDS:g} s warm-up: half "
        "/predict_sync, a quarter /predict_batch of 4 (one blank text each), a quarter /predict_async to taskiq "
        "on Redis, each job followed at /jobs/{id}; access log on; max_jobs 500",
        requests=warm.requests + load.requests,
        requests_measured=load.requests,
        requests_per_second=round(load.requests / load.seconds),
        items_predicted=warm.items + load.items,
        errors=warm.error_count + load.error_count,
        jobs_accepted=len(accepted),
        jobs_delivered=len(delivered_ids),
        jobs_dead_lettered=len(dead_ids),
        duplicate_deliveries=len(delivered[RESULTS]) + len(delivered[FAILURES]) - len(delivered_ids),
        rss_after_warm_up_mib=round(rss_warm / 1024, 1),
        rss_after_run_mib=round(rss_run / 1024, 1),
        rss_after_delivery_mib=round(rss_after / 1024, 1),
        seconds=round(warm.seconds + load.seconds, 1),
    )

    assert warm.errors + load.errors == []
    assert warm.error_count + load.error_count == 0
    assert min(load.by_kind[kind] for kind in ("sync", "batch", "async")) > 0
    finished = sum(w.by_kind["job_success"] + w.by_kind["job_error"] for w in (warm, load))
    assert finished == len(accepted), "every accepted job reached its final state at /jobs/{id}"
    assert delivered_ids | dead_ids == set(accepted), "every accepted job was delivered or dead-lettered"
    assert not dead_ids, "Redis was up the whole time: nothing should need the dead letter"
    assert len(set(delivered[FAILURES])) == warm.by_kind["job_error"] + load.by_kind["job_error"]
    assert metric(metrics, "modalkit_async_deliveries_total") >= len(accepted)
    assert rss_run <= rss_warm * (1 + MEMORY_GROWTH_BOUND), (rss_warm, rss_run)
    assert rss_after <= rss_warm * (1 + MEMORY_GROWTH_BOUND), (rss_warm, rss_after)
