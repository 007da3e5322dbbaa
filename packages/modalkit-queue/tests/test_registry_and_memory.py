"""The backend registry (names from YAML) and the in-memory backend."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from modalkit_config import QueueConfig
from modalkit_queue import (
    BatchQueueBackend,
    MemoryBackend,
    QueueBackend,
    QueueConfigError,
    UnknownBackendError,
    create_backend,
    register_backend,
    registered_backends,
    unregister_backend,
)


class RecordingBackend:
    """A user's own backend, registered by name."""

    def __init__(self, queue_config: QueueConfig) -> None:
        self.config = queue_config
        self.sent: list[tuple[str, str]] = []

    async def send(self, queue_name: str, message: str) -> None:
        self.sent.append((queue_name, message))

    async def close(self) -> None:
        pass


@pytest.fixture
def custom_name() -> Iterator[str]:
    yield "recording"
    unregister_backend("recording")


def test_default_config_builds_the_memory_backend() -> None:
    backend = create_backend()
    assert isinstance(backend, MemoryBackend)
    assert isinstance(create_backend(QueueConfig(backend="memory")), MemoryBackend)


def test_builtin_names_are_registered() -> None:
    assert {"memory", "sqs", "taskiq"} <= set(registered_backends())


def test_unknown_backend_names_the_key_and_what_is_available() -> None:
    with pytest.raises(UnknownBackendError) as info:
        create_backend(QueueConfig(backend="rabbit"))
    text = str(info.value)
    assert "app_settings.queue_config.backend" in text
    assert "'rabbit'" in text
    assert "'memory'" in text
    assert "register_backend" in text
    assert isinstance(info.value, ValueError)


def test_a_registered_backend_is_built_from_its_yaml_name(custom_name: str) -> None:
    register_backend(custom_name, RecordingBackend)
    config = QueueConfig(backend=custom_name)
    backend = create_backend(config)
    assert isinstance(backend, RecordingBackend)
    assert backend.config is config
    assert isinstance(backend, QueueBackend)
    assert not isinstance(backend, BatchQueueBackend)


def test_registering_a_taken_name_needs_replace(custom_name: str) -> None:
    register_backend(custom_name, RecordingBackend)
    with pytest.raises(QueueConfigError, match="already registered"):
        register_backend(custom_name, RecordingBackend)
    register_backend(custom_name, lambda cfg: MemoryBackend(), replace=True)
    assert isinstance(create_backend(QueueConfig(backend=custom_name)), MemoryBackend)


def test_unregistering_a_builtin_restores_it() -> None:
    register_backend("memory", RecordingBackend, replace=True)
    try:
        assert isinstance(create_backend(), RecordingBackend)
    finally:
        unregister_backend("memory")
    assert isinstance(create_backend(), MemoryBackend)


@pytest.mark.parametrize("name", ["", "has space", "a/b", 5])
def test_bad_names_and_factories_are_rejected(name: object) -> None:
    with pytest.raises(QueueConfigError, match="invalid backend name"):
        register_backend(name, RecordingBackend)  # type: ignore[arg-type]
    with pytest.raises(QueueConfigError, match="must be callable"):
        register_backend("fine", "not callable")  # type: ignore[arg-type]


def test_memory_backend_keeps_messages_per_queue_in_order() -> None:
    backend = MemoryBackend()
    assert isinstance(backend, BatchQueueBackend)

    async def go() -> None:
        await backend.send("a", "1")
        await backend.send_batch("a", ["2", "3"])
        await backend.send("b", "x")
        await backend.close()

    asyncio.run(go())
    assert backend.messages("a") == ["1", "2", "3"]
    assert backend.queue_names() == ["a", "b"]
    assert backend.messages("nope") == []
    assert backend.pop_all("a") == ["1", "2", "3"]
    assert backend.messages("a") == []


def test_memory_backend_can_bound_each_queue() -> None:
    backend = MemoryBackend(max_messages_per_queue=2)
    asyncio.run(backend.send_batch("a", ["1", "2", "3"]))
    assert backend.messages("a") == ["2", "3"]
    with pytest.raises(ValueError, match="max_messages_per_queue"):
        MemoryBackend(max_messages_per_queue=0)


def test_memory_backend_is_safe_across_threads() -> None:
    backend = MemoryBackend()

    def produce(t: int) -> None:
        async def go() -> None:
            for i in range(300):
                await backend.send("q", f"{t}-{i}")

        asyncio.run(go())

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(backend.messages("q")) == sorted(f"{t}-{i}" for t in range(4) for i in range(300))
