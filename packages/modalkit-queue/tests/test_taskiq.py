"""The taskiq backend and consumers: InMemoryBroker in-process, RedisStreamBroker against a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from taskiq import InMemoryBroker
from taskiq.api import run_receiver_task
from taskiq.kicker import AsyncKicker
from taskiq_redis import RedisStreamBroker

from modalkit_config import QueueConfig
from modalkit_queue import (
    DeliveryError,
    DeliveryEvent,
    QueueConfigError,
    ReliableSender,
    RetryPolicy,
    TaskiqBackend,
    TaskiqConsumer,
    consumer_broker,
    create_backend,
    job_id_of,
    result_message,
)

FAST = RetryPolicy(max_attempts=3, initial_backoff_seconds=0.001, max_backoff_seconds=0.005)


def msg(i: int | str) -> str:
    return result_message({"status": "success", "value": i}, f"job-{i}")


def jobs(bodies: list[str]) -> list[str]:
    return sorted(str(job_id_of(b)) for b in bodies)


@pytest.fixture
async def redis(redis_server: Any) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def read_all(url: str, queue: str, max_messages: int = 10_000) -> list[str]:
    async with TaskiqConsumer(url, queue) as consumer:
        return await consumer.receive_all(max_messages, wait_seconds=0.2)


# -- memory:// ------------------------------------------------------------------------------------------------


async def test_memory_broker_keeps_results_readable() -> None:
    backend = create_backend(QueueConfig(backend="taskiq", broker_url="memory://"))
    assert isinstance(backend, TaskiqBackend)
    assert isinstance(backend.broker, InMemoryBroker)
    await backend.send("results", msg(1))
    await backend.send_batch("results", [msg(2), msg(3)])
    await backend.close()
    assert jobs(backend.messages("results")) == ["job-1", "job-2", "job-3"]


async def test_a_broker_of_your_own_runs_your_task_named_after_the_queue() -> None:
    broker = InMemoryBroker(await_inplace=True)
    received: list[dict[str, Any]] = []

    @broker.task(task_name="results")
    async def on_result(message: str) -> None:
        received.append(json.loads(message))

    backend = TaskiqBackend(broker=broker)
    await backend.send("results", msg(7))
    await backend.close()
    assert [r["job_id"] for r in received] == ["job-7"]
    assert backend.messages("results") == []


def test_unsupported_broker_urls_are_rejected_with_the_key() -> None:
    with pytest.raises(QueueConfigError, match=r"queue_config\.broker_url.*'amqp://x'"):
        TaskiqBackend("amqp://x")
    with pytest.raises(QueueConfigError, match="redis://"):
        consumer_broker("memory://", "results")


# -- redis:// -------------------------------------------------------------------------------------------------


async def test_redis_uses_the_stream_broker_and_a_stream_per_queue(redis_server: Any, redis: Redis) -> None:
    backend = TaskiqBackend(redis_server.url)
    assert isinstance(backend.broker, RedisStreamBroker)
    await backend.send("results", msg(1))
    await backend.send_batch("errors", [msg(2), msg(3)])
    await backend.close()
    assert await redis.xlen("results") == 1
    assert await redis.xlen("errors") == 2
    entries = await redis.xrange("results")
    assert entries is not None
    ((_, fields),) = entries
    assert fields is not None
    task = json.loads(fields[b"data"])
    assert task["task_name"] == "results"
    assert task["args"] == [msg(1)]
    assert jobs(await read_all(redis_server.url, "results")) == ["job-1"]
    assert jobs(await read_all(redis_server.url, "errors")) == ["job-2", "job-3"]
    assert await read_all(redis_server.url, "errors") == []  # acknowledged: not read twice


async def test_a_taskiq_worker_started_after_the_results_were_sent_still_gets_them(redis_server: Any) -> None:
    backend = TaskiqBackend(redis_server.url)
    for i in range(5):
        await backend.send("results", msg(i))
    await backend.close()

    # What the docs tell a consumer to run, driven in-process by taskiq's own receiver.
    broker = consumer_broker(redis_server.url, "results", xread_block=100)
    got: list[str] = []
    done = asyncio.Event()

    @broker.task(task_name="results")
    async def on_result(message: str) -> None:
        got.append(message)
        if len(got) == 5:
            done.set()

    await broker.startup()
    worker = asyncio.create_task(run_receiver_task(broker))
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await broker.shutdown()
    assert jobs(got) == [f"job-{i}" for i in range(5)]


async def test_the_consumer_joins_a_stream_that_has_no_group_yet_from_its_start(redis_server: Any) -> None:
    # Results kicked by plain taskiq (no modalkit backend, so nobody created the consumer group).
    broker = RedisStreamBroker(redis_server.url)
    await broker.startup()
    for i in range(3):
        kicker: AsyncKicker[[str], None] = AsyncKicker("results", broker, {"queue_name": "results"})
        await kicker.kiq(msg(i))
    await broker.shutdown()
    assert jobs(await read_all(redis_server.url, "results")) == ["job-0", "job-1", "job-2"]


async def test_reliable_sender_delivers_through_taskiq(redis_server: Any, tmp_path: Path) -> None:
    with ReliableSender(TaskiqBackend(redis_server.url), retry=FAST, dead_letter_file=tmp_path / "dl.jsonl") as sender:
        for i in range(300):
            sender.submit("results", msg(i), f"job-{i}")
        assert await asyncio.to_thread(sender.flush, 60)
    assert jobs(await read_all(redis_server.url, "results")) == sorted(f"job-{i}" for i in range(300))


async def test_poison_message_ends_in_the_redis_dead_letter_queue(
    redis_server: Any, redis: Redis, tmp_path: Path
) -> None:
    # A key of the wrong type where the stream should be: Redis rejects every XADD to it (WRONGTYPE).
    await redis.set("broken", "not a stream")
    events: list[DeliveryEvent] = []
    retry = RetryPolicy(max_attempts=3, initial_backoff_seconds=0.001, max_backoff_seconds=0.002)
    with ReliableSender(
        TaskiqBackend(redis_server.url),
        retry=retry,
        dead_letter_queue="dead",
        dead_letter_file=tmp_path / "dl.jsonl",
        on_event=events.append,
    ) as sender:
        sender.submit("broken", msg(1), "job-1")
        sender.submit("results", msg(2), "job-2")
        assert await asyncio.to_thread(sender.flush, 30)
    assert jobs(await read_all(redis_server.url, "results")) == ["job-2"]
    (envelope,) = [json.loads(b) for b in await read_all(redis_server.url, "dead")]
    assert envelope["job_id"] == "job-1"
    assert envelope["queue"] == "broken"
    assert envelope["attempts"] == 3
    assert "WRONGTYPE" in envelope["error"]
    assert [e.kind for e in events if e.job_id == "job-1"] == ["retry", "retry", "dead_lettered"]
    assert not (tmp_path / "dl.jsonl").exists()


async def test_a_send_error_is_a_delivery_error_naming_the_queue(redis_server: Any, redis: Redis) -> None:
    await redis.set("broken", "not a stream")
    backend = TaskiqBackend(redis_server.url)
    with pytest.raises(DeliveryError, match="'broken'"):
        await backend.send("broken", msg(1))
    await backend.close()


# -- faults ---------------------------------------------------------------------------------------------------


PATIENT = RetryPolicy(max_attempts=200, initial_backoff_seconds=0.02, max_backoff_seconds=0.2)


async def test_redis_down_when_results_are_sent_then_back(redis_server: Any, tmp_path: Path, tally: Any) -> None:
    redis_server.stop()
    sender = ReliableSender(
        TaskiqBackend(redis_server.url), retry=PATIENT, dead_letter_file=tmp_path / "dl.jsonl", on_event=tally
    )
    with sender:
        for i in range(100):
            sender.submit("results", msg(i), f"job-{i}")
        await asyncio.to_thread(tally.wait_for, "retry", 100)
        assert tally.kinds["delivered"] == 0
        await asyncio.to_thread(redis_server.start)
        assert await asyncio.to_thread(sender.flush, 60)
    assert set(jobs(await read_all(redis_server.url, "results"))) == {f"job-{i}" for i in range(100)}
    assert tally.kinds["delivered"] == 100
    assert tally.dead == []


@pytest.fixture
async def persistent_redis(redis_server: Any, redis: Redis) -> AsyncIterator[Any]:
    """The test Redis, made to snapshot on shutdown, as a production Redis would, so a restart keeps its data."""
    directory = (await redis.config_get("dir"))["dir"]
    await redis.config_set("save", "3600 1")
    yield redis_server
    client = Redis.from_url(redis_server.url)
    await client.config_set("save", "")
    await client.flushall()
    await client.aclose()
    (Path(str(directory)) / "dump.rdb").unlink(missing_ok=True)


async def test_redis_restarts_mid_stream_and_every_result_arrives_once(
    persistent_redis: Any, tmp_path: Path, tally: Any
) -> None:
    total = 400
    sender = ReliableSender(
        TaskiqBackend(persistent_redis.url), retry=PATIENT, dead_letter_file=tmp_path / "dl.jsonl", on_event=tally
    )

    async def produce() -> None:
        for i in range(total):
            sender.submit("results", msg(i), f"job-{i}")
            if i % 10 == 0:
                await asyncio.sleep(0.005)  # keep results coming while Redis is away

    with sender:
        producer = asyncio.create_task(produce())
        await asyncio.to_thread(tally.wait_for, "delivered", 60)
        await asyncio.to_thread(persistent_redis.stop)
        await asyncio.to_thread(tally.wait_for, "retry", 30)
        await asyncio.to_thread(persistent_redis.start)
        await producer
        assert await asyncio.to_thread(sender.flush, 60)
    bodies = await read_all(persistent_redis.url, "results")
    counts = Counter(job_id_of(b) for b in bodies)
    assert set(counts) == {f"job-{i}" for i in range(total)}, "every result arrives (after de-duplication)"
    assert tally.kinds["delivered"] == total
    assert tally.dead == []
