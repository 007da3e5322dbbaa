"""The SQS backend and consumer against moto's server on loopback, reached by boto3 over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from modalkit_config import QueueConfig, SQSConfig
from modalkit_queue import (
    BatchDeliveryError,
    DeliveryEvent,
    MessageTooLargeError,
    QueueNotFoundError,
    ReliableSender,
    RetryPolicy,
    SQSBackend,
    SQSConsumer,
    create_backend,
    job_id_of,
    receive_sqs,
    result_message,
)

pytestmark = pytest.mark.usefixtures("aws_env")

FAST = RetryPolicy(max_attempts=3, initial_backoff_seconds=0.001, max_backoff_seconds=0.005)


@pytest.fixture
def sqs() -> Iterator[Any]:
    client = boto3.client("sqs")
    yield client
    client.close()


def msg(i: int | str, size: int = 0) -> str:
    return result_message({"status": "success", "value": i, "pad": "x" * size}, f"job-{i}")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def jobs(bodies: list[str]) -> list[str]:
    return sorted(str(job_id_of(b)) for b in bodies)


def test_send_and_read_back(sqs: Any) -> None:
    sqs.create_queue(QueueName="results")
    backend = SQSBackend()

    async def go() -> None:
        await backend.send("results", msg(1))
        await backend.send_batch("results", [msg(i) for i in range(2, 25)])
        await backend.close()

    run(go())
    assert jobs(receive_sqs("results", max_messages=100)) == sorted(f"job-{i}" for i in range(1, 25))
    assert receive_sqs("results", wait_seconds=0) == []


def test_boto3_never_runs_on_the_event_loop_thread(sqs: Any) -> None:
    sqs.create_queue(QueueName="results")
    backend = SQSBackend()
    seen: list[str] = []
    backend.client.meta.events.register("before-send.sqs.*", lambda **_: seen.append(threading.current_thread().name))

    async def go() -> str:
        await backend.send("results", msg(1))
        await backend.send_batch("results", [msg(2), msg(3)])
        await backend.close()
        return threading.current_thread().name

    loop_thread = run(go())
    assert seen
    assert loop_thread not in seen
    assert all(name.startswith("modalkit-sqs") for name in seen)


def test_queue_urls_are_cached(sqs: Any) -> None:
    sqs.create_queue(QueueName="results")
    backend = SQSBackend()
    operations: list[str] = []
    backend.client.meta.events.register("before-call.sqs.*", lambda model, **_: operations.append(model.name))

    async def go() -> None:
        for i in range(5):
            await backend.send("results", msg(i))
        await backend.close()

    run(go())
    assert Counter(operations) == {"GetQueueUrl": 1, "SendMessage": 5}


def test_a_missing_queue_fails_loudly_unless_create_missing(sqs: Any) -> None:
    strict = SQSBackend()
    with pytest.raises(QueueNotFoundError, match=r"'typo' does not exist.*create_missing"):
        run(strict.send("typo", msg(1)))
    run(strict.close())
    assert "QueueUrls" not in sqs.list_queues()

    lenient = SQSBackend(create_missing=True)
    run(lenient.send("made-for-you", msg(1)))
    run(lenient.close())
    assert jobs(receive_sqs("made-for-you")) == ["job-1"]


def test_fifo_queues_get_a_group_and_dedup_by_job_id(sqs: Any) -> None:
    backend = SQSBackend(create_missing=True, message_group_id="results-group")

    async def go() -> None:
        await backend.send("results.fifo", msg(1))
        await backend.send("results.fifo", msg(1))  # a retry of the same job: SQS drops it
        await backend.send_batch("results.fifo", [msg(2), msg(3), msg(2)])
        await backend.close()

    run(go())
    url = sqs.get_queue_url(QueueName="results.fifo")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["FifoQueue"])["Attributes"]["FifoQueue"] == "true"
    got = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"]
    )["Messages"]
    assert [job_id_of(m["Body"]) for m in got] == ["job-1", "job-2", "job-3"]
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {"results-group"}
    assert [m["Attributes"]["MessageDeduplicationId"] for m in got] == ["job-1", "job-2", "job-3"]


def test_oversized_messages_fail_alone_in_a_batch(sqs: Any) -> None:
    sqs.create_queue(QueueName="results")
    backend = SQSBackend(max_message_bytes=2048)
    with pytest.raises(MessageTooLargeError, match="over the 2048-byte limit"):
        run(backend.send("results", msg("big", size=4096)))
    with pytest.raises(BatchDeliveryError) as info:
        run(backend.send_batch("results", [msg(0), msg("big", size=4096), msg(2, size=1500), msg(3, size=1500)]))
    run(backend.close())
    assert list(info.value.failures) == [1]
    assert isinstance(info.value.failures[1], MessageTooLargeError)
    # The two 1.5 KB messages cannot share a 2 KB request: they went in separate requests, and both arrived.
    assert jobs(receive_sqs("results")) == ["job-0", "job-2", "job-3"]


def test_endpoint_and_region_come_from_config(aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = QueueConfig(
        backend="sqs", sqs=SQSConfig(region_name="eu-west-1", endpoint_url=aws_env.endpoint, create_missing=True)
    )
    backend = create_backend(config)
    assert isinstance(backend, SQSBackend)
    assert backend.client.meta.region_name == "eu-west-1"
    assert backend.client.meta.endpoint_url == aws_env.endpoint
    assert backend.create_missing is True
    run(backend.send("results", msg(1)))
    run(backend.close())
    assert jobs(receive_sqs("results", region_name="eu-west-1", endpoint_url=aws_env.endpoint)) == ["job-1"]


def test_consumer_reads_in_tens_and_deletes(sqs: Any) -> None:
    sqs.create_queue(QueueName="results")
    url = sqs.get_queue_url(QueueName="results")["QueueUrl"]
    for start in range(0, 30, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": msg(start + i)} for i in range(10)])
    consumer = SQSConsumer("results")
    first = consumer.receive(max_messages=10)
    assert 1 <= len(first) <= 10
    rest = consumer.receive_all(max_messages=100, wait_seconds=0)
    assert jobs(first + rest) == sorted(f"job-{i}" for i in range(30))
    with pytest.raises(QueueNotFoundError):
        SQSConsumer("absent").receive()


def test_reliable_sender_delivers_through_sqs(sqs: Any, tmp_path: Path) -> None:
    sqs.create_queue(QueueName="results")
    with ReliableSender(SQSBackend(), retry=FAST, dead_letter_file=tmp_path / "dl.jsonl") as sender:
        for i in range(120):
            sender.submit("results", msg(i), f"job-{i}")
        assert sender.flush(timeout=60)
    assert jobs(receive_sqs("results", max_messages=500)) == sorted(f"job-{i}" for i in range(120))


def test_poison_message_to_a_missing_queue_ends_in_the_dead_letter_queue(sqs: Any, tmp_path: Path) -> None:
    sqs.create_queue(QueueName="results")
    sqs.create_queue(QueueName="dead")
    events: list[DeliveryEvent] = []
    retry = RetryPolicy(max_attempts=4, initial_backoff_seconds=0.001, max_backoff_seconds=0.002)
    with ReliableSender(
        SQSBackend(),
        retry=retry,
        dead_letter_queue="dead",
        dead_letter_file=tmp_path / "dl.jsonl",
        on_event=events.append,
    ) as sender:
        sender.submit("results", msg(1), "job-1")
        sender.submit("no-such-queue", msg(2), "job-2")
        assert sender.flush(timeout=30)
    assert jobs(receive_sqs("results")) == ["job-1"]
    (envelope,) = [json.loads(b) for b in receive_sqs("dead")]
    assert envelope["job_id"] == "job-2"
    assert envelope["queue"] == "no-such-queue"
    assert envelope["attempts"] == 4
    assert "does not exist" in envelope["error"]
    assert json.loads(envelope["message"])["job_id"] == "job-2"
    assert [e.kind for e in events if e.job_id == "job-2"] == ["retry"] * 3 + ["dead_lettered"]
    assert not (tmp_path / "dl.jsonl").exists()


def test_oversized_poison_message_ends_in_the_dead_letter_file(sqs: Any, tmp_path: Path) -> None:
    # Too large for the queue, and so also for the dead-letter queue: the local file is the last stop.
    sqs.create_queue(QueueName="results")
    sqs.create_queue(QueueName="dead")
    big = msg("big", size=300_000)
    with ReliableSender(
        SQSBackend(), retry=FAST, dead_letter_queue="dead", dead_letter_file=tmp_path / "dl.jsonl"
    ) as sender:
        sender.submit("results", big, "job-big")
        sender.submit("results", msg(1), "job-1")
        assert sender.flush(timeout=30)
    assert jobs(receive_sqs("results")) == ["job-1"]
    assert receive_sqs("dead", wait_seconds=0) == []
    (record,) = [json.loads(line) for line in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert record["job_id"] == "job-big"
    assert record["message"] == big
    assert "262144-byte limit" in record["error"]


# A retry budget far longer than the outages below: nothing should reach the dead letter.
PATIENT = RetryPolicy(max_attempts=200, initial_backoff_seconds=0.02, max_backoff_seconds=0.2)


def test_sqs_endpoint_down_when_results_are_sent_then_back(aws_env: Any, sqs: Any, tmp_path: Path, tally: Any) -> None:
    sqs.create_queue(QueueName="results")
    aws_env.stop()
    sender = ReliableSender(SQSBackend(), retry=PATIENT, dead_letter_file=tmp_path / "dl.jsonl", on_event=tally)
    with sender:
        for i in range(60):
            sender.submit("results", msg(i), f"job-{i}")
        tally.wait_for("retry", 60)  # every one of them has failed at least once
        assert tally.kinds["delivered"] == 0
        aws_env.start()
        # moto restarts empty; a real SQS queue would still exist, so put it back as it was.
        boto3.client("sqs").create_queue(QueueName="results")
        assert sender.flush(timeout=60)
    bodies = receive_sqs("results", max_messages=500)
    assert set(jobs(bodies)) == {f"job-{i}" for i in range(60)}
    assert tally.kinds["delivered"] == 60
    assert tally.dead == []


@pytest.fixture
def threaded_moto(in_process_moto: Any) -> Any:
    """moto in this process, started: stopping its HTTP server keeps its queues, like a real endpoint outage."""
    in_process_moto.start()
    return in_process_moto


def test_sqs_endpoint_goes_away_mid_stream_and_comes_back(threaded_moto: Any, tmp_path: Path, tally: Any) -> None:
    client = boto3.client("sqs", endpoint_url=threaded_moto.url)
    client.create_queue(QueueName="results")
    total = 200
    sender = ReliableSender(
        SQSBackend(endpoint_url=threaded_moto.url, connect_timeout=1, read_timeout=2),
        retry=PATIENT,
        dead_letter_file=tmp_path / "dl.jsonl",
        on_event=tally,
    )
    submitted = threading.Event()

    def produce() -> None:
        for i in range(total):
            sender.submit("results", msg(i), f"job-{i}")
            if i % 10 == 0:
                threading.Event().wait(0.01)  # keep results coming while the endpoint is away
        submitted.set()

    with sender:
        producer = threading.Thread(target=produce)
        producer.start()
        tally.wait_for("delivered", 40)
        threaded_moto.stop()
        tally.wait_for("retry", 30)
        threaded_moto.start()
        producer.join()
        assert sender.flush(timeout=60)
    bodies = receive_sqs("results", max_messages=1000, endpoint_url=threaded_moto.url)
    counts = Counter(job_id_of(b) for b in bodies)
    assert set(counts) == {f"job-{i}" for i in range(total)}, "every result arrives (after de-duplication)"
    assert tally.kinds["delivered"] == total
    assert tally.dead == []
    assert submitted.is_set()
