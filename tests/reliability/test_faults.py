"""Faults during load: a raising model, a hanging model, Redis and SQS going away, SSM unreachable, SIGTERM.

Each scenario serves a real process (``modalkit serve``) under concurrent clients while the fault happens, then
counts what became of every async job the service accepted: delivered to its queue, or dead-lettered. The two
must add up to the accepted jobs, with nothing left over.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
from tests.reliability.reliability_support import (
    AWS_ENV,
    FAULTY_APP,
    FAULTY_CONFIG,
    SENTIMENT_APP,
    SENTIMENT_CONFIG,
    Load,
    Mix,
    Report,
    check_json_error,
    dead_letters,
    job_ids,
    metric,
    read_redis,
    run_load,
    start_server,
    wait_until_ready,
    write_overlay,
)

from modalkit_queue import receive_sqs
from modalkit_serve.testing import ServedProcess

if TYPE_CHECKING:  # at run time another conftest module may stand under that name
    from conftest import InProcessMoto as Endpoint

pytestmark = pytest.mark.reliability

CLIENTS = 32
MAX_REQUESTS_PER_CLIENT = 1_000
# Retries far longer than the outages below, so a result waits for its queue to come back.
PATIENT_RETRY = "retry: {max_attempts: 100, initial_backoff_seconds: 0.05, max_backoff_seconds: 0.5}"


async def under_load(
    url: str,
    mix: Mix,
    *,
    seconds: float,
    fault: Callable[[], Awaitable[None]] | None = None,
    clients: int = CLIENTS,
    stop: Callable[[], bool] | None = None,
) -> Load:
    """Clients and the fault at once; returns what the clients saw."""
    load_task = run_load(
        url, mix, clients=clients, seconds=seconds, max_requests_per_client=MAX_REQUESTS_PER_CLIENT, stop=stop
    )
    if fault is None:
        return await load_task
    load, _ = await asyncio.gather(load_task, fault())
    return load


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return (await client.get("/metrics")).text


async def wait_for_deliveries(url: str, accepted: int, within: float = 60) -> tuple[int, int]:
    """(delivered, dead-lettered) from the server's metrics, once they add up to ``accepted`` (bounded)."""
    deadline = time.monotonic() + within
    while True:
        text = await scrape(url)
        delivered = int(metric(text, "modalkit_async_deliveries_total"))
        dead = int(metric(text, "modalkit_dead_letters_total"))
        if delivered + dead >= accepted or time.monotonic() > deadline:
            return delivered, dead
        await asyncio.sleep(0.1)


async def sigterm_and_wait(server: ServedProcess, within: float = 90) -> int:
    """SIGTERM the server's group and wait for it to drain and exit."""
    server.signal(signal.SIGTERM)
    return await asyncio.to_thread(server.wait, within)


def no_unhandled_errors(server: ServedProcess) -> None:
    assert "unhandled error" not in server.stderr()


def account(
    report: Report, scenario: str, tried: str, load: Load, delivered: set[str], dead: set[str], **more: Any
) -> None:
    """Record the figures, then check that accepted = delivered + dead-lettered (as sets of job ids)."""
    accepted = set(load.accepted)
    report.record(
        scenario,
        tried,
        requests=load.requests,
        errors=load.error_count,
        jobs_accepted=len(accepted),
        jobs_delivered=len(delivered & accepted),
        jobs_dead_lettered=len(dead - delivered),
        seconds=round(load.seconds, 1),
        **{k: v for k, v in load.by_kind.items() if k.startswith(("refused_", "failed_alone"))},
        **more,
    )
    assert load.errors == []
    assert accepted, "the scenario accepted no async job"
    assert delivered | dead == accepted, (
        f"lost: {sorted(accepted - delivered - dead)[:5]}; unknown: {sorted((delivered | dead) - accepted)[:5]}"
    )


# -- the model ------------------------------------------------------------------------------------------------------


async def test_a_model_that_raises_on_some_inputs_fails_those_alone(tmp_path: Path, report: Report) -> None:
    server = await asyncio.to_thread(start_server, FAULTY_APP, FAULTY_CONFIG, tmp_path)
    try:
        load = await under_load(server.url, Mix(boom_every=7), seconds=4)
        delivered, dead = await wait_for_deliveries(server.url, len(load.accepted))
        no_unhandled_errors(server)
    finally:
        await asyncio.to_thread(server.stop)

    report.record(
        "model raises on some inputs",
        "32 clients for 4 s, every 7th text makes the model raise (the whole batch raises; the worker isolates it)",
        requests=load.requests,
        errors=load.error_count,
        failed_alone=load.by_kind["failed_alone"],
        jobs_accepted=len(load.accepted),
        jobs_delivered=delivered,
        jobs_dead_lettered=dead,
        seconds=round(load.seconds, 1),
    )
    assert load.errors == []
    assert load.by_kind["failed_alone"] > 0
    assert load.by_kind["sync"] > 0
    assert load.by_kind["batch"] > 0
    assert (delivered, dead) == (len(load.accepted), 0)


async def test_a_model_that_hangs_past_the_timeout_gets_504s_and_the_server_stays_healthy(
    tmp_path: Path, report: Report
) -> None:
    # Timeout 1 s (the app's config); a batch with "hang" stalls 1.5 s, then the model is fine again.
    overlay = write_overlay(
        tmp_path / "hang.yaml", "model_settings:\n  model_entries:\n    faulty: {hang_seconds: 1.5}\n"
    )
    server = await asyncio.to_thread(start_server, FAULTY_APP, FAULTY_CONFIG, tmp_path, overlay)
    hangs: list[httpx.Response] = []
    health: list[int] = []
    done = asyncio.Event()

    async def hang_twice_and_watch_health() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

            async def watch() -> None:
                while not done.is_set():
                    health.append((await client.get("/health")).status_code)
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch())
            for delay in (0.5, 2.0):
                await asyncio.sleep(delay)
                hangs.append(await client.post("/predict_sync", json={"text": "this one will hang"}))
            await asyncio.sleep(0.5)
            done.set()
            await watcher

    try:
        # Requests caught behind a stuck batch time out too: 504 is their expected answer, in JSON.
        load = await under_load(server.url, Mix(tolerated={504}), seconds=5, fault=hang_twice_and_watch_health)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            deadline = time.monotonic() + 15
            recovered = await client.post("/predict_sync", json={"text": "afterwards"})
            while recovered.status_code != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                recovered = await client.post("/predict_sync", json={"text": "afterwards"})
        delivered, dead = await wait_for_deliveries(server.url, len(load.accepted))
        no_unhandled_errors(server)
    finally:
        await asyncio.to_thread(server.stop)

    report.record(
        "model hangs past the timeout",
        "32 clients for 5 s; twice a request makes the model stall 1.5 s with request_timeout_seconds 1",
        requests=load.requests + len(hangs),
        errors=load.error_count,
        refused_504=load.by_kind["refused_504"] + len(hangs),
        health_checks=len(health),
        jobs_accepted=len(load.accepted),
        jobs_delivered=delivered,
        jobs_dead_lettered=dead,
        seconds=round(load.seconds, 1),
    )
    assert [r.status_code for r in hangs] == [504, 504]
    assert all(check_json_error(r) is None for r in hangs)
    assert health
    assert set(health) == {200}
    assert recovered.status_code == 200
    assert load.errors == []
    assert load.by_kind["sync"] > 0
    assert (delivered, dead) == (len(load.accepted), 0), "async jobs never time out: all delivered"


# -- Redis ------------------------------------------------------------------------------------------------------------


async def test_redis_killed_and_restarted_during_load_loses_no_job(
    persistent_redis: Any, tmp_path: Path, report: Report
) -> None:
    dead_file = tmp_path / "dead.jsonl"
    overlay = write_overlay(
        tmp_path / "taskiq.yaml",
        f"""\
app_settings:
  queue_config:
    backend: taskiq
    broker_url: {persistent_redis.url}
    {PATIENT_RETRY}
    dead_letter: {{file: {dead_file}}}
""",
    )
    server = await asyncio.to_thread(start_server, SENTIMENT_APP, SENTIMENT_CONFIG, tmp_path, overlay)
    outage: dict[str, float] = {}

    async def kill_and_restart_redis() -> None:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(persistent_redis.stop)
        outage["down_at"] = time.monotonic()
        await asyncio.sleep(2.0)
        await asyncio.to_thread(persistent_redis.start)
        outage["seconds"] = time.monotonic() - outage["down_at"]

    try:
        load = await under_load(
            server.url,
            Mix(success_queue="rel-results", failure_queue="rel-failures", async_share=2),
            seconds=6,
            fault=kill_and_restart_redis,
        )
        retries = metric(await scrape(server.url), "modalkit_delivery_retries_total")
        code = await sigterm_and_wait(server)  # drains: every accepted job delivered or dead-lettered
        no_unhandled_errors(server)
    finally:
        await asyncio.to_thread(server.stop)

    delivered = await read_redis(persistent_redis.url, "rel-results", "rel-failures")
    dead = {record["job_id"] for record in dead_letters(dead_file)}
    account(
        report,
        "Redis killed and restarted",
        "32 clients for 6 s, async results to taskiq on Redis; redis-server stopped for 2 s mid-run, then "
        "SIGTERM to drain",
        load,
        delivered,
        dead,
        delivery_retries=int(retries),
        outage_seconds=round(outage["seconds"], 1),
    )
    assert code in (0, -signal.SIGTERM)
    assert retries > 0, "the outage was felt: deliveries were retried"


# -- SQS ------------------------------------------------------------------------------------------------------------


async def test_the_sqs_endpoint_stopped_and_restarted_during_load_loses_no_job(
    endpoint: Endpoint, tmp_path: Path, report: Report
) -> None:
    endpoint.start()
    sqs = boto3.client("sqs", endpoint_url=endpoint.url)
    for queue in ("rel-results", "rel-failures"):
        sqs.create_queue(QueueName=queue)
    dead_file = tmp_path / "dead.jsonl"
    # A queue that does not exist (create_missing is off): those results must end in the dead letter, after
    # 20 attempts (several seconds, far longer than the outage, which must cost no result).
    overlay = write_overlay(
        tmp_path / "sqs.yaml",
        f"""\
app_settings:
  queue_config:
    backend: sqs
    sqs: {{endpoint_url: "{endpoint.url}", region_name: us-east-1, create_missing: false}}
    retry: {{max_attempts: 20, initial_backoff_seconds: 0.1, max_backoff_seconds: 0.4}}
    dead_letter: {{file: {dead_file}}}
""",
    )
    server = await asyncio.to_thread(start_server, SENTIMENT_APP, SENTIMENT_CONFIG, tmp_path, overlay, env=AWS_ENV)

    async def stop_and_restart_sqs() -> None:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(endpoint.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(endpoint.start)

    try:
        load = await under_load(
            server.url,
            Mix(success_queue="rel-results", failure_queue="rel-failures", async_share=2, missing_queue="rel-nope"),
            seconds=5,
            fault=stop_and_restart_sqs,
        )
        retries = metric(await scrape(server.url), "modalkit_delivery_retries_total")
        code = await sigterm_and_wait(server)
        no_unhandled_errors(server)
    finally:
        await asyncio.to_thread(server.stop)

    delivered: set[str] = set()
    for queue in ("rel-results", "rel-failures"):
        bodies = await asyncio.to_thread(receive_sqs, queue, max_messages=10_000, endpoint_url=endpoint.url)
        delivered |= set(job_ids(bodies))
    records = dead_letters(dead_file)
    dead = {record["job_id"] for record in records}
    account(
        report,
        "SQS endpoint stopped and restarted",
        "32 clients for 5 s, async results to SQS (moto); the endpoint stopped for 1.5 s mid-run; every 20th "
        "job names a queue that does not exist (20 attempts, then the dead letter); then SIGTERM to drain",
        load,
        delivered,
        dead,
        delivery_retries=int(retries),
    )
    assert code in (0, -signal.SIGTERM)
    assert retries > 0
    assert {r["queue"] for r in records} == {"rel-nope"}, "only results for the missing queue are dead-lettered"


# -- SSM ------------------------------------------------------------------------------------------------------------


async def test_ssm_unreachable_means_not_ready_never_open_and_later_outages_keep_cached_keys(
    endpoint: Endpoint, tmp_path: Path, report: Report
) -> None:
    key = "ssm-held-key-for-the-reliability-suite"
    overlay = write_overlay(
        tmp_path / "ssm.yaml",
        f"""\
app_settings:
  auth_config:
    ssm_key: /reliability/api-key
    ssm_region: us-east-1
    ssm_endpoint_url: "{endpoint.url}"
    cache_ttl_seconds: 0.5
""",
    )
    # SSM is down at start-up (nothing listens on its endpoint yet).
    server = await asyncio.to_thread(
        start_server, SENTIMENT_APP, SENTIMENT_CONFIG, tmp_path, overlay, env=AWS_ENV, wait_ready=False
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            health = await client.get("/health")
            ready = await client.get("/ready")
        closed = await under_load(server.url, Mix(headers={"x-api-key": key}, tolerated={503}), seconds=2, clients=16)
        still_not_ready = (await asyncio.to_thread(httpx.get, f"{server.url}/ready")).status_code

        # SSM comes up with the key: the service becomes ready and the key works.
        await asyncio.to_thread(endpoint.start)
        ssm = boto3.client("ssm", endpoint_url=endpoint.url, region_name="us-east-1")
        ssm.put_parameter(Name="/reliability/api-key", Value=key, Type="SecureString")
        await asyncio.to_thread(wait_until_ready, server)

        # SSM goes away while clients use the key: the cached key keeps working, a wrong key stays refused.
        wrong: list[int] = []

        async def ssm_outage() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(endpoint.stop)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                for _ in range(20):
                    response = await client.post(
                        "/predict_sync", json={"text": "hi"}, headers={"x-api-key": "not-the-key"}
                    )
                    wrong.append(response.status_code)
                    await asyncio.sleep(0.1)
            await asyncio.to_thread(endpoint.start)

        load = await under_load(server.url, Mix(headers={"x-api-key": key}), seconds=5, fault=ssm_outage)
        delivered, dead = await wait_for_deliveries(server.url, len(load.accepted))
        log = server.stderr()
        no_unhandled_errors(server)
    finally:
        await asyncio.to_thread(server.stop)

    report.record(
        "SSM unreachable",
        "SSM down at start-up (16 clients for 2 s with the key), then up, then down for 3 s under 32 clients "
        "(cache_ttl_seconds 0.5) with a wrong key tried meanwhile",
        requests=closed.requests + load.requests + len(wrong),
        errors=load.error_count + closed.error_count,
        refused_503_while_not_ready=closed.by_kind["refused_503"],
        answered_2xx_while_not_ready=closed.statuses[200] + closed.statuses[202],
        jobs_accepted=len(load.accepted),
        jobs_delivered=delivered,
        jobs_dead_lettered=dead,
        seconds=round(closed.seconds + load.seconds, 1),
    )
    assert health.status_code == 200
    assert ready.status_code == 503
    assert still_not_ready == 503
    assert closed.errors == []
    assert closed.requests > 0
    assert closed.by_kind["refused_503"] == closed.requests, "not ready: every protected request is refused"
    assert not closed.accepted
    assert load.errors == []
    assert load.by_kind["sync"] > 0
    assert set(wrong) == {401}
    assert "could not fetch API keys" in log
    assert key not in log
    assert (delivered, dead) == (len(load.accepted), 0)


# -- SIGTERM ----------------------------------------------------------------------------------------------------------


async def test_sigterm_during_load_delivers_or_dead_letters_every_accepted_job(
    redis_server: Any, tmp_path: Path, report: Report
) -> None:
    dead_file = tmp_path / "dead.jsonl"
    overlay = write_overlay(
        tmp_path / "slow.yaml",
        f"""\
app_settings:
  queue_config:
    backend: taskiq
    broker_url: {redis_server.url}
    dead_letter: {{file: {dead_file}}}
  server_config:
    request_timeout_seconds: 30
model_settings:
  model_entries:
    faulty: {{batch_sleep_ms: 100}}
""",
    )
    server = await asyncio.to_thread(start_server, FAULTY_APP, FAULTY_CONFIG, tmp_path, overlay)
    sent: dict[str, float] = {}

    async def sigterm_mid_run() -> None:
        await asyncio.sleep(2.0)
        queued = metric(await scrape(server.url), "modalkit_queue_depth")
        sent["queued_at_sigterm"] = queued
        server.signal(signal.SIGTERM)
        sent["at"] = time.monotonic()

    try:
        # After SIGTERM the server refuses new work (503) and then closes: both expected, neither an error.
        load = await under_load(
            server.url,
            Mix(success_queue="rel-results", failure_queue="rel-failures", async_share=2, tolerated={503}),
            seconds=8,
            clients=64,
            fault=sigterm_mid_run,
            stop=lambda: "at" in sent,
        )
        code = await asyncio.to_thread(server.wait, 90)
        drain_seconds = time.monotonic() - sent["at"]
    finally:
        await asyncio.to_thread(server.stop)

    delivered = await read_redis(redis_server.url, "rel-results", "rel-failures")
    dead = {record["job_id"] for record in dead_letters(dead_file)}
    account(
        report,
        "SIGTERM during load",
        "64 clients, async results to taskiq on Redis, a model taking 100 ms a batch of up to 16 (so work "
        "queues up); SIGTERM after 2 s",
        load,
        delivered,
        dead,
        queued_at_sigterm=int(sent["queued_at_sigterm"]),
        drain_seconds=round(drain_seconds, 1),
    )
    assert code in (0, -signal.SIGTERM)
