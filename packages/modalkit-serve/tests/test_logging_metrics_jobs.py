"""JSON logging, the metrics registry and the job store, each on its own."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from modalkit_pipeline import AsyncInputModel, InferenceOutputModel, ItemError
from modalkit_serve import ServeMetrics, configure_logging
from modalkit_serve._jobs import Job, JobStore, job_status_json
from modalkit_serve._logging import AccessLog, shutdown_logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("INFO", stream=stream)
    yield stream
    shutdown_logging()
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    shutdown_logging()  # flushes the background writer
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_are_json_lines_with_time_level_logger_and_message(log_stream: io.StringIO) -> None:
    logging.getLogger("modalkit.test").warning("hello %s", "there", extra={"model": "m1"})
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("modalkit.test").exception("failed")

    first, second = lines(log_stream)
    assert first["message"] == "hello there"
    assert first["level"] == "WARNING"
    assert first["logger"] == "modalkit.test"
    assert first["model"] == "m1"
    assert str(first["time"]).endswith("Z")
    assert "ValueError: bad" in str(second["exc_info"])


def test_access_records_carry_the_request_fields(log_stream: io.StringIO) -> None:
    AccessLog().log(("rid-1", "POST", '/odd"path\n', "other", "m1", 404, 1.23456, 3, 0.5))

    [record] = lines(log_stream)
    assert record == {
        "time": record["time"],
        "level": "INFO",
        "logger": "modalkit.access",
        "message": 'POST /odd"path\n 404 1.2ms',
        "request_id": "rid-1",
        "method": "POST",
        "path": '/odd"path\n',
        "route": "other",
        "model": "m1",
        "status": 404,
        "latency_ms": 1.235,
        "batch_size": 3,
        "queue_wait_ms": 0.5,
    }


def test_the_access_log_respects_the_level(log_stream: io.StringIO) -> None:
    logging.getLogger("modalkit.access").setLevel(logging.WARNING)
    try:
        AccessLog().log(("rid-2", "GET", "/health", "/health", None, 200, 0.1, None, None))
    finally:
        logging.getLogger("modalkit.access").setLevel(logging.NOTSET)
    assert lines(log_stream) == []


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        configure_logging("LOUD")


def test_histograms_count_into_cumulative_buckets() -> None:
    metrics = ServeMetrics(process_metrics=False)
    for size in (1, 2, 3, 32, 33):
        metrics.observe_batch("m", size, 0.001, 0.002)

    text = metrics.render().decode()
    assert 'modalkit_batch_size_bucket{le="1.0",model="m"} 1.0' in text
    assert 'modalkit_batch_size_bucket{le="4.0",model="m"} 3.0' in text
    assert 'modalkit_batch_size_bucket{le="32.0",model="m"} 4.0' in text
    assert 'modalkit_batch_size_bucket{le="64.0",model="m"} 5.0' in text
    assert 'modalkit_batch_size_bucket{le="+Inf",model="m"} 5.0' in text
    assert 'modalkit_batch_size_sum{model="m"} 71.0' in text


def test_delivery_events_become_counters() -> None:
    metrics = ServeMetrics(process_metrics=False)
    for kind in ("delivered", "delivered", "retry", "dead_lettered", "dead_letter_failed", "something new"):
        metrics.on_delivery_event(SimpleNamespace(kind=kind, queue_name="results"))

    text = metrics.render().decode()
    assert 'modalkit_async_deliveries_total{queue="results"} 2.0' in text
    assert 'modalkit_delivery_retries_total{queue="results"} 1.0' in text
    assert 'modalkit_dead_letters_total{outcome="dead_lettered",queue="results"} 1.0' in text
    assert 'modalkit_dead_letters_total{outcome="dead_letter_failed",queue="results"} 1.0' in text


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = ServeMetrics(), ServeMetrics()
    a.observe_request("/health", 200, 0.001)

    assert 'modalkit_requests_total{route="/health",status="200"} 1.0' in a.render().decode()
    assert "modalkit_requests_total{" not in b.render().decode()
    assert "process_resident_memory_bytes" in a.render().decode()


class Out(InferenceOutputModel):
    value: int


def job(job_id: str) -> Job:
    return Job(job_id, "m", AsyncInputModel[Out](message=Out(value=1)))


def test_finished_jobs_expire_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("modalkit_serve._jobs.time.monotonic", lambda: now[0])
    store = JobStore(ttl_seconds=10, max_jobs=100)
    done, pending = job("done"), job("pending")
    store.add(done)
    store.add(pending)
    store.finish(done, Out(value=2))

    now[0] += 9
    assert store.get("done") is done
    now[0] += 2
    assert store.get("done") is None
    assert store.get("pending") is pending  # unfinished jobs never expire


def test_a_full_store_forgets_finished_jobs_first() -> None:
    store = JobStore(ttl_seconds=3600, max_jobs=3)
    a, b, c = job("a"), job("b"), job("c")
    for j in (a, b, c):
        store.add(j)
    store.finish(b, Out(value=1))

    store.add(job("d"))
    assert store.get("b") is None
    assert store.get("a") is a
    store.add(job("e"))  # nothing finished left: the oldest goes
    assert store.get("a") is None
    assert len(store) == 3


def test_job_status_json_keeps_the_results_own_fields() -> None:
    assert json.loads(job_status_json("j", "success", Out(value=3))) == {
        "job_id": "j",
        "status": "success",
        "result": {"status": "success", "error": None, "value": 3},
    }
    assert json.loads(job_status_json("j", "error", ItemError(error="x")))["result"]["error"] == "x"
    assert json.loads(job_status_json("j", "pending", None))["result"] is None
