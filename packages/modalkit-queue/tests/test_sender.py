"""ReliableSender: outbox, batching, retries with backoff, dead letter, close/drain, thread-safety."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from modalkit_config import DeadLetterConfig, QueueConfig, RetryConfig
from modalkit_queue import (
    BatchDeliveryError,
    DeliveryError,
    DeliveryEvent,
    MemoryBackend,
    OutboxFullError,
    ReliableSender,
    RetryPolicy,
    SenderClosedError,
    UnknownBackendError,
    job_id_of,
    result_message,
    send_response_queue,
)

FAST = RetryPolicy(max_attempts=3, initial_backoff_seconds=0.001, max_backoff_seconds=0.005)


class ScriptedBackend:
    """A backend that fails the way a test says: the first N attempts of each job, or always for some jobs.

    It stands in for a remote queue only where a real one cannot be made to misbehave on cue; the real
    SQS and Redis backends get their own fault tests against real servers.
    """

    def __init__(
        self,
        *,
        fail_first: int = 0,
        poison: set[str] | None = None,
        batch: bool = True,
        broken_queues: set[str] | None = None,
    ) -> None:
        self.fail_first = fail_first
        self.poison = poison or set()
        self.broken_queues = broken_queues or set()
        self.delivered: dict[str, list[str]] = {}
        self.attempts: Counter[str] = Counter()
        self.calls: list[tuple[str, int]] = []
        self.closed = False
        self._lock = threading.Lock()
        if not batch:
            self.send_batch = None  # type: ignore[assignment]

    def _one(self, queue_name: str, message: str) -> None:
        job = job_id_of(message) or message
        with self._lock:
            self.attempts[job] += 1
            if queue_name in self.broken_queues:
                raise DeliveryError(queue_name, f"queue {queue_name} is broken")
            if job in self.poison and queue_name != "dlq":  # the dead-letter envelope carries the job id too
                raise DeliveryError(queue_name, f"{job} is poison")
            if self.attempts[job] <= self.fail_first:
                raise DeliveryError(queue_name, f"transient failure {self.attempts[job]} for {job}")
            self.delivered.setdefault(queue_name, []).append(message)

    async def send(self, queue_name: str, message: str) -> None:
        self.calls.append((queue_name, 1))
        self._one(queue_name, message)

    async def send_batch(self, queue_name: str, messages: Sequence[str]) -> None:
        self.calls.append((queue_name, len(messages)))
        failures: dict[int, BaseException] = {}
        for index, message in enumerate(messages):
            try:
                self._one(queue_name, message)
            except DeliveryError as exc:
                failures[index] = exc
        if failures:
            raise BatchDeliveryError(queue_name, failures)

    async def close(self) -> None:
        self.closed = True


class WholeBatchFails(ScriptedBackend):
    """A backend whose batch call fails outright (no per-message report) when any message in it is poison."""

    async def send_batch(self, queue_name: str, messages: Sequence[str]) -> None:
        self.calls.append((queue_name, len(messages)))
        if any((job_id_of(m) or "") in self.poison for m in messages):
            raise DeliveryError(queue_name, "batch rejected")
        for message in messages:
            self._one(queue_name, message)


class GatedBackend:
    """Holds every send until the test opens the gate (to fill the outbox, or to hang past close)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.delivered: list[str] = []

    async def send(self, queue_name: str, message: str) -> None:
        await asyncio.to_thread(self.gate.wait)
        self.delivered.append(message)

    async def close(self) -> None:
        self.gate.set()


def msg(i: int | str) -> str:
    return result_message({"status": "success", "value": i}, f"job-{i}")


@pytest.fixture
def dead_letters(tmp_path: Path) -> Path:
    return tmp_path / "dead" / "letters.jsonl"


def read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_delivers_every_message_submitted_from_many_threads(dead_letters: Path) -> None:
    backend = MemoryBackend()
    events: list[DeliveryEvent] = []
    with ReliableSender(backend, retry=FAST, dead_letter_file=dead_letters, on_event=events.append) as sender:

        def produce(t: int) -> None:
            for i in range(200):
                sender.submit(f"q{t % 2}", msg(f"{t}-{i}"), f"job-{t}-{i}")

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sender.flush(timeout=30)
        assert sender.pending == 0
    got = [str(job_id_of(m)) for m in backend.messages("q0") + backend.messages("q1")]
    assert sorted(got) == sorted(f"job-{t}-{i}" for t in range(6) for i in range(200))
    assert Counter(e.kind for e in events) == {"delivered": 1200}
    assert not dead_letters.exists()


def test_groups_messages_per_queue_into_batches(dead_letters: Path) -> None:
    backend = ScriptedBackend()
    sender = ReliableSender(backend, retry=FAST, dead_letter_file=dead_letters, concurrency=1, max_batch_size=10)
    gate = threading.Event()
    original = backend.send_batch

    async def held(queue_name: str, messages: Sequence[str]) -> None:
        await asyncio.to_thread(gate.wait)
        await original(queue_name, messages)

    backend.send_batch = held  # type: ignore[method-assign]
    sender.start()
    # The single worker picks the first message up alone; the rest queue behind it and go out in tens.
    for i in range(31):
        sender.submit("q", msg(i), f"job-{i}")
    gate.set()
    assert sender.close(timeout=10)
    assert len(backend.delivered["q"]) == 31
    assert max(size for _, size in backend.calls) == 10
    assert len(backend.calls) < 31


def test_retries_transient_failures_with_events_then_delivers(dead_letters: Path) -> None:
    backend = ScriptedBackend(fail_first=2)
    events: list[DeliveryEvent] = []
    retry = RetryPolicy(max_attempts=3, initial_backoff_seconds=0.001, max_backoff_seconds=0.002)
    with ReliableSender(backend, retry=retry, dead_letter_file=dead_letters, on_event=events.append) as sender:
        for i in range(20):
            sender.submit("q", msg(i), f"job-{i}")
        assert sender.flush(timeout=10)
    assert sorted(str(job_id_of(m)) for m in backend.delivered["q"]) == sorted(f"job-{i}" for i in range(20))
    kinds = Counter(e.kind for e in events)
    assert kinds == {"retry": 40, "delivered": 20}
    assert {e.attempts for e in events if e.kind == "delivered"} == {3}
    assert all(e.error and "transient failure" in e.error for e in events if e.kind == "retry")


def test_poison_message_goes_to_the_dead_letter_file_after_the_configured_attempts(
    dead_letters: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = ScriptedBackend(poison={"job-bad"})
    events: list[DeliveryEvent] = []
    retry = RetryPolicy(max_attempts=4, initial_backoff_seconds=0.001, max_backoff_seconds=0.002)
    with (
        caplog.at_level(logging.INFO, logger="modalkit_queue"),
        ReliableSender(backend, retry=retry, dead_letter_file=dead_letters, on_event=events.append) as sender,
    ):
        sender.submit("q", msg("ok"), "job-ok")
        sender.submit("q", msg("bad"), "job-bad")
        assert sender.flush(timeout=10)
    assert backend.attempts["job-bad"] == 4
    assert [job_id_of(m) for m in backend.delivered["q"]] == ["job-ok"]
    (record,) = read_jsonl(dead_letters)
    assert record["job_id"] == "job-bad"
    assert record["queue"] == "q"
    assert record["attempts"] == 4
    assert record["message"] == msg("bad")
    assert "poison" in str(record["error"])
    dead = [e for e in events if e.kind == "dead_lettered"]
    assert [(e.job_id, e.attempts, e.target) for e in dead] == [("job-bad", 4, f"file:{dead_letters}")]
    assert any(r.levelno == logging.ERROR and "job-bad" in r.getMessage() for r in caplog.records)


def test_poison_message_goes_to_the_dead_letter_queue_when_one_is_configured(dead_letters: Path) -> None:
    backend = ScriptedBackend(poison={"job-bad"})
    events: list[DeliveryEvent] = []
    with ReliableSender(
        backend, retry=FAST, dead_letter_queue="dlq", dead_letter_file=dead_letters, on_event=events.append
    ) as sender:
        sender.submit("q", msg("bad"), "job-bad")
        assert sender.flush(timeout=10)
    (envelope,) = [json.loads(m) for m in backend.delivered["dlq"]]
    assert envelope["job_id"] == "job-bad"
    assert envelope["queue"] == "q"
    assert envelope["message"] == msg("bad")
    assert envelope["attempts"] == 3
    assert [e.target for e in events if e.kind == "dead_lettered"] == ["queue:dlq"]
    assert not dead_letters.exists()


def test_unreachable_dead_letter_queue_falls_back_to_the_file(dead_letters: Path) -> None:
    backend = ScriptedBackend(broken_queues={"q", "dlq"})
    with ReliableSender(backend, retry=FAST, dead_letter_queue="dlq", dead_letter_file=dead_letters) as sender:
        sender.submit("q", msg(1), "job-1")
        assert sender.flush(timeout=10)
    (record,) = read_jsonl(dead_letters)
    assert record["job_id"] == "job-1"
    assert "dead-letter queue 'dlq' failed too" in str(record["error"])


def test_one_poison_message_does_not_sink_the_rest_of_its_batch(dead_letters: Path) -> None:
    backend = WholeBatchFails(poison={"job-5"})
    sender = ReliableSender(backend, retry=FAST, dead_letter_file=dead_letters, concurrency=1)
    gate = threading.Event()
    original = backend.send

    async def held(queue_name: str, message: str) -> None:
        await asyncio.to_thread(gate.wait)
        await original(queue_name, message)

    backend.send = held  # type: ignore[method-assign]
    with sender:
        for i in range(10):
            sender.submit("q", msg(i), f"job-{i}")
        gate.set()
        assert sender.flush(timeout=10)
    assert any(size > 1 for _, size in backend.calls), "the test must exercise a batch"
    assert sorted(str(job_id_of(m)) for m in backend.delivered["q"]) == sorted(f"job-{i}" for i in range(10) if i != 5)
    assert [r["job_id"] for r in read_jsonl(dead_letters)] == ["job-5"]


def test_outbox_is_bounded_and_frees_up_after_delivery(dead_letters: Path) -> None:
    backend = GatedBackend()
    with ReliableSender(backend, retry=FAST, outbox_size=5, dead_letter_file=dead_letters) as sender:
        for i in range(5):
            sender.submit("q", msg(i), f"job-{i}")
        assert sender.pending == 5
        assert not sender.has_capacity()
        with pytest.raises(OutboxFullError, match="outbox is full"):
            sender.submit("q", msg(5), "job-5")
        backend.gate.set()
        assert sender.flush(timeout=10)
        assert sender.has_capacity(5)
        assert not sender.has_capacity(6)
        sender.submit("q", msg(6), "job-6")
    assert len(backend.delivered) == 6


def test_close_drains_what_is_pending_and_closes_the_backend(dead_letters: Path) -> None:
    backend = ScriptedBackend(fail_first=1)
    sender = ReliableSender(backend, retry=FAST, dead_letter_file=dead_letters).start()
    for i in range(50):
        sender.submit("q", msg(i), f"job-{i}")
    assert sender.close(timeout=10)
    assert len(backend.delivered["q"]) == 50
    assert backend.closed
    assert sender.close() is True  # idempotent


def test_close_timeout_writes_undelivered_messages_to_the_dead_letter_file(dead_letters: Path) -> None:
    backend = GatedBackend()  # never opens until close() closes it
    sender = ReliableSender(backend, retry=FAST, dead_letter_file=dead_letters).start()
    for i in range(3):
        sender.submit("q", msg(i), f"job-{i}")
    assert sender.close(timeout=0.05) is False
    assert sorted(str(r["job_id"]) for r in read_jsonl(dead_letters)) == ["job-0", "job-1", "job-2"]
    assert all(str(r["error"]).startswith("shutdown:") for r in read_jsonl(dead_letters))


def test_submit_outside_the_running_state_and_bad_arguments_are_clear_errors(dead_letters: Path) -> None:
    sender = ReliableSender(MemoryBackend(), dead_letter_file=dead_letters)
    with pytest.raises(SenderClosedError, match="call start"):
        sender.submit("q", msg(1), "job-1")
    sender.start()
    with pytest.raises(TypeError, match="queue_name must be a non-empty string"):
        sender.submit("", msg(1), "job-1")
    with pytest.raises(TypeError, match="job_id must be a non-empty string"):
        sender.submit("q", msg(1), "")
    with pytest.raises(TypeError, match="message must be"):
        sender.submit("q", b"bytes", "job-1")  # type: ignore[arg-type]
    sender.close()
    with pytest.raises(SenderClosedError):
        sender.submit("q", msg(1), "job-1")
    with pytest.raises(SenderClosedError, match="create a new one"):
        sender.start()


def test_a_failing_event_callback_does_not_stop_delivery(dead_letters: Path, caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend()

    def explode(event: DeliveryEvent) -> None:
        raise RuntimeError("metrics are down")

    with ReliableSender(backend, dead_letter_file=dead_letters, on_event=explode) as sender:
        for i in range(5):
            sender.submit("q", msg(i), f"job-{i}")
        assert sender.flush(timeout=10)
    assert len(backend.messages("q")) == 5
    assert "on_event callback failed" in caplog.text


def test_when_even_the_file_fails_the_message_is_in_the_error_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = ScriptedBackend(poison={"job-bad"})
    events: list[DeliveryEvent] = []
    # A directory where the file should be: appending to it fails.
    with ReliableSender(backend, retry=FAST, dead_letter_file=tmp_path, on_event=events.append) as sender:
        sender.submit("q", msg("bad"), "job-bad")
        assert sender.flush(timeout=10)
    assert [e.kind for e in events if e.kind.startswith("dead")] == ["dead_letter_failed"]
    assert msg("bad") in caplog.text


def test_submit_works_from_inside_a_running_event_loop(dead_letters: Path) -> None:
    backend = MemoryBackend()

    async def handler(sender: ReliableSender) -> None:
        for i in range(10):
            sender.submit("q", msg(i), f"job-{i}")
        assert await asyncio.to_thread(sender.flush, 10)

    with ReliableSender(backend, dead_letter_file=dead_letters) as sender:
        asyncio.run(handler(sender))
    assert len(backend.messages("q")) == 10


def test_backoff_doubles_up_to_the_cap_and_full_jitter_stays_below_it() -> None:
    policy = RetryPolicy(max_attempts=10, initial_backoff_seconds=0.5, max_backoff_seconds=3.0, jitter=False)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(max_attempts=10, initial_backoff_seconds=0.5, max_backoff_seconds=3.0, jitter=True)
    rng = random.Random(7)
    waits = [jittered.backoff(4, rng) for _ in range(200)]
    assert all(0.0 <= w <= 3.0 for w in waits)
    assert len(set(waits)) > 100


def test_sender_is_wired_from_queue_config(tmp_path: Path) -> None:
    config = QueueConfig(
        backend="memory",
        retry=RetryConfig(max_attempts=7, initial_backoff_seconds=0.1, max_backoff_seconds=1.0, jitter=False),
        outbox_size=42,
        dead_letter=DeadLetterConfig(queue="dead", file=str(tmp_path / "dl.jsonl")),
    )
    sender = ReliableSender.from_config(config)
    assert isinstance(sender.backend, MemoryBackend)
    assert sender.retry == RetryPolicy(7, 0.1, 1.0, False, 120)
    assert sender.outbox_size == 42
    assert sender.dead_letter_queue == "dead"
    assert sender.dead_letter_file == tmp_path / "dl.jsonl"


def test_send_response_queue_reports_delivery_and_dead_letter(tmp_path: Path) -> None:
    config = QueueConfig(
        retry=RetryConfig(max_attempts=2, initial_backoff_seconds=0.001, max_backoff_seconds=0.001),
        dead_letter=DeadLetterConfig(file=str(tmp_path / "dl.jsonl")),
    )
    backend = MemoryBackend()
    assert send_response_queue("q", msg(1), queue_config=config, backend=backend) is True
    assert backend.messages("q") == [msg(1)]
    assert send_response_queue("q", msg(2), queue_config=config, backend=ScriptedBackend(poison={"job-2"})) is False
    assert [r["job_id"] for r in read_jsonl(tmp_path / "dl.jsonl")] == ["job-2"]
    with pytest.raises(TypeError, match="queue_message must be a string"):
        send_response_queue("q", {"not": "text"}, queue_config=config)  # type: ignore[arg-type]


def test_send_response_queue_reads_the_queue_config_from_modalkit_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "modalkit.yaml").write_text(
        "app_settings:\n"
        "  app_prefix: demo\n"
        "  queue_config:\n"
        "    backend: nowhere\n"
        "model_settings:\n"
        "  model_entries:\n"
        "    m: {}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALKIT_CONFIG", raising=False)
    # The YAML names a backend nobody registered: the error proves the file was read.
    with pytest.raises(UnknownBackendError, match="'nowhere'"):
        send_response_queue("q", msg(1))


class HangsOnce:
    """A backend whose first call for each message never returns, like a connection that went silent."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.delivered: list[str] = []

    async def send(self, queue_name: str, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            await asyncio.Event().wait()
        self.delivered.append(message)

    async def close(self) -> None:
        pass


def test_a_hung_attempt_times_out_and_is_retried(dead_letters: Path) -> None:
    backend = HangsOnce()
    events: list[DeliveryEvent] = []
    with ReliableSender(
        backend, retry=FAST, dead_letter_file=dead_letters, attempt_timeout=0.05, on_event=events.append
    ) as sender:
        sender.submit("q", msg(1), "job-1")
        assert sender.flush(timeout=10)
    assert backend.delivered == [msg(1)]
    retry, delivered = events
    assert retry.kind == "retry"
    assert retry.error == "TimeoutError: no reply within 0.05s"
    assert (delivered.kind, delivered.attempts) == ("delivered", 2)


def test_results_pending_when_the_process_exits_are_still_delivered(tmp_path: Path) -> None:
    out = tmp_path / "delivered.txt"
    script = f"""
import asyncio
from modalkit_queue import ReliableSender

class SlowFile:
    async def send(self, queue_name, message):
        await asyncio.sleep(0.05)
        with open({str(out)!r}, "a") as fh:
            fh.write(message + "\\n")
    async def close(self):
        pass

sender = ReliableSender(SlowFile(), dead_letter_file={str(tmp_path / "dl.jsonl")!r}, concurrency=1).start()
for i in range(5):
    sender.submit("q", f"m{{i}}", f"job-{{i}}")
# no close(): the interpreter exits with five results in the outbox
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert sorted(out.read_text().split()) == [f"m{i}" for i in range(5)]


class DownFor:
    """A queue that refuses every send for ``seconds`` after the first one (an outage), then takes them."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: float | None = None
        self.delivered: list[str] = []
        self.attempts = 0

    async def send(self, queue_name: str, message: str) -> None:
        now = time.monotonic()
        self.attempts += 1
        if self.started is None:
            self.started = now
        if now - self.started < self.seconds:
            raise DeliveryError(queue_name, "connection refused")
        self.delivered.append(message)

    async def close(self) -> None:
        pass


def test_a_time_budget_rides_out_an_outage_the_attempt_count_would_not(dead_letters: Path) -> None:
    backend = DownFor(0.6)
    retry = RetryPolicy(max_attempts=100, initial_backoff_seconds=0.01, max_backoff_seconds=0.02, max_elapsed_seconds=5)
    with ReliableSender(backend, retry=retry, dead_letter_file=dead_letters) as sender:
        sender.submit("q", msg(1), "job-1")
        assert sender.flush(timeout=10)
    assert backend.delivered == [msg(1)]
    assert read_jsonl(dead_letters) == []
    assert backend.attempts > 5  # five attempts (the old default) would have dead-lettered it


def test_the_time_budget_dead_letters_once_spent_however_many_attempts_are_left(dead_letters: Path) -> None:
    backend = DownFor(3600)
    retry = RetryPolicy(
        max_attempts=100, initial_backoff_seconds=0.01, max_backoff_seconds=0.02, max_elapsed_seconds=0.5
    )
    started = time.monotonic()
    with ReliableSender(backend, retry=retry, dead_letter_file=dead_letters) as sender:
        sender.submit("q", msg(1), "job-1")
        assert sender.flush(timeout=10)
    elapsed = time.monotonic() - started
    (record,) = read_jsonl(dead_letters)
    assert record["job_id"] == "job-1"
    assert int(str(record["attempts"])) < 100
    # Not before the budget was spent: the sender stops as soon as the next retry would land past it, so at most
    # one back-off (0.02 s here) before the 0.5 s.
    assert elapsed >= 0.5 - 0.02


def test_the_configured_default_retry_budget_rides_out_a_minute_long_outage() -> None:
    retry = RetryConfig()
    assert retry.max_elapsed_seconds is not None
    assert retry.max_elapsed_seconds >= 90
    policy = RetryPolicy.from_config(retry)
    # The attempts must not run out first: with full jitter a wait averages half its cap.
    caps = dataclasses.replace(policy, jitter=False)
    mean_total = sum(caps.backoff(n) for n in range(1, policy.max_attempts)) / 2
    assert mean_total >= 2 * retry.max_elapsed_seconds
    assert policy.max_elapsed_seconds == retry.max_elapsed_seconds


class GatedQueue(GatedBackend):
    """Holds the sends to one queue until the gate opens; the others go at once."""

    async def send(self, queue_name: str, message: str) -> None:
        if queue_name == "held":
            await super().send(queue_name, message)
        else:
            self.delivered.append(message)


def test_wait_for_jobs_returns_once_those_jobs_are_settled_whatever_else_is_pending(dead_letters: Path) -> None:
    backend = GatedQueue()
    with ReliableSender(backend, retry=FAST, dead_letter_file=dead_letters) as sender:
        sender.submit("held", msg("held"), "job-held")
        sender.submit("free", msg(1), "job-1")
        sender.submit("free", msg(2), "job-2")

        assert sender.wait_for_jobs(["job-1", "job-2", "job-never-submitted"], timeout=10) == set()
        assert sorted(json.loads(m)["job_id"] for m in backend.delivered) == ["job-1", "job-2"]
        assert sender.pending == 1
        assert sender.wait_for_jobs(["job-held", "job-1"], timeout=0.05) == {"job-held"}

        backend.gate.set()
        assert sender.wait_for_jobs(["job-held"], timeout=10) == set()
    assert len(backend.delivered) == 3
