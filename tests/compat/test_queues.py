"""The earlier queue API: ``send_message(queue, message) -> bool`` backends, the string factory, the examples."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modalkit.exceptions import BackendError, TypeValidationError
from modalkit.task_queue import (
    CustomRedisExample,
    InMemoryBackend,
    QueueBackend,
    SQSBackend,
    TaskIQExample,
    create_backend,
    register_backend,
    send_response_queue,
)
from modalkit_queue import MemoryBackend, unregister_backend


async def test_in_memory_backend_send_message_returns_true_and_keeps_the_message() -> None:
    backend = InMemoryBackend()
    assert await backend.send_message("results", '{"status": "success"}') is True
    assert backend.messages("results") == ['{"status": "success"}']


async def test_send_message_refuses_a_non_string() -> None:
    with pytest.raises(TypeValidationError, match="string"):
        await InMemoryBackend().send_message("results", {"status": "success"})  # type: ignore[arg-type]


def test_create_backend_takes_the_earlier_backend_name() -> None:
    backend = create_backend("memory")
    assert isinstance(backend, InMemoryBackend)
    assert isinstance(backend, MemoryBackend)


def test_create_backend_unknown_name_is_a_backend_error_listing_the_known_ones() -> None:
    with pytest.raises(BackendError, match="memory"):
        create_backend("rabbit-typo")


def test_register_backend_takes_an_earlier_style_class() -> None:
    class Collecting:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs
            self.sent: list[tuple[str, str]] = []

        async def send_message(self, queue_name: str, message: str) -> bool:
            self.sent.append((queue_name, message))
            return True

    register_backend("compat-collecting", Collecting)
    try:
        backend = create_backend("compat-collecting", region="x")
        assert isinstance(backend, Collecting)
        assert backend.kwargs == {"region": "x"}
    finally:
        unregister_backend("compat-collecting")


def test_queue_backend_protocol_is_the_earlier_one() -> None:
    class Mine:
        async def send_message(self, queue_name: str, message: str) -> bool:
            return True

    assert hasattr(QueueBackend, "send_message")
    assert isinstance(Mine(), QueueBackend)


@pytest.mark.usefixtures("aws_env")
async def test_sqs_backend_available_and_send_message_against_moto() -> None:
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="compat-results")["QueueUrl"]
    backend = SQSBackend()
    assert backend.available is True
    assert await backend.send_message("compat-results", '{"status": "success"}') is True
    received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in received] == ['{"status": "success"}']
    await backend.close()


@pytest.mark.usefixtures("aws_env")
async def test_sqs_backend_creates_a_missing_queue_as_before() -> None:
    import boto3

    backend = SQSBackend()
    assert await backend.send_message("compat-new-queue", "{}") is True
    await backend.close()
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName="compat-new-queue")["QueueUrl"]
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]] == ["{}"]


@pytest.mark.usefixtures("aws_env")
async def test_sqs_send_message_is_false_when_told_not_to_create_the_queue() -> None:
    backend = SQSBackend(create_missing=False)
    assert await backend.send_message("compat-no-such-queue", "{}") is False
    await backend.close()


async def test_custom_redis_example_pushes_to_a_redis_list(redis_server: Any) -> None:
    from redis.asyncio import Redis

    backend = CustomRedisExample(redis_server.url)
    assert await backend.send_message("compat-list", '{"a": 1}') is True
    client = Redis.from_url(redis_server.url)
    try:
        assert await client.lrange("compat-list", 0, -1) == [b'{"a": 1}']
    finally:
        await client.aclose()
        await backend.close()


async def test_taskiq_example_kicks_a_task_readable_by_a_consumer(redis_server: Any) -> None:
    from modalkit_queue import TaskiqConsumer

    backend = TaskIQExample(redis_server.url)
    assert await backend.send_message("compat-taskiq", json.dumps({"job_id": "j1", "status": "success"})) is True
    await backend.close()
    async with TaskiqConsumer(redis_server.url, "compat-taskiq") as consumer:
        messages = await consumer.receive_all()
    assert [json.loads(m)["job_id"] for m in messages] == ["j1"]


def test_send_response_queue_refuses_a_non_string_with_the_earlier_error() -> None:
    with pytest.raises(TypeValidationError, match="Expected string"):
        send_response_queue("results", {"status": "success"})  # type: ignore[arg-type]


def test_send_response_queue_reads_the_configured_backend(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "modalkit.yaml").write_text(
        "app_settings: {app_prefix: q, queue_config: {backend: compat-box}}\nmodel_settings: {model_entries: {m: {}}}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALKIT_CONFIG", raising=False)
    box = MemoryBackend()
    from modalkit_queue import register_backend as register_factory

    register_factory("compat-box", lambda _config: box)
    try:
        assert send_response_queue("results", '{"job_id": "j1"}') is True
    finally:
        unregister_backend("compat-box")
    assert box.messages("results") == ['{"job_id": "j1"}']
