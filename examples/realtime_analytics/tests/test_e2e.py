"""The whole stream: a real `modalkit serve`, a real redis-server and a real `taskiq worker` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import stream

from modalkit_queue import result_message
from modalkit_queue.taskiq import TaskiqBackend

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parent.parent
APP = str(EXAMPLE / "app.py")
BROKER_ENV = "MODALKIT_APP_SETTINGS__QUEUE_CONFIG__BROKER_URL"


@contextlib.contextmanager
def taskiq_worker(redis_url: str, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``taskiq worker worker:broker`` as its own process group, stopped by its PID."""
    env = {**os.environ, "ANALYTICS_REDIS_URL": redis_url}
    argv = [sys.executable, "-m", "taskiq", "worker", "worker:broker", "--workers", "1", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=EXAMPLE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_for(check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_reading_reaches_the_worker_once_and_the_spikes_are_caught(
    redis_server: Any, serving: Callable[..., Any], tmp_path: Path
) -> None:
    with (
        serving(APP, cwd=tmp_path, env={BROKER_ENV: redis_server.url}) as server,
        taskiq_worker(redis_server.url, tmp_path / "worker.log"),
    ):
        report = asyncio.run(
            stream.run(server.url, redis_server.url, events=600, rate=400, sensors=10, anomalies=4, seed=3, wait_s=60)
        )

    assert (report.sent, report.accepted, report.refused) == (600, 600, {})
    assert report.consumed == 600, (tmp_path / "worker.log").read_text()[-3000:]
    assert len(report.lag_ms) == 600  # one lag figure a reading: each was counted exactly once
    assert all(lag > 0 for lag in report.lag_ms)
    assert report.injected <= report.flagged  # every spike was caught
    assert len(report.flagged - report.injected) <= 6  # at most 1% false alarms
    totals = redis.Redis.from_url(redis_server.url).hgetall("analytics:readings")
    assert {k.decode(): int(v) for k, v in totals.items()} == {f"sensor-{i}": 60 for i in range(10)}


def test_a_verdict_delivered_twice_is_counted_once(redis_server: Any, tmp_path: Path) -> None:
    # At least once: the same job's message twice on the stream, as after a lost acknowledgement, then another
    # job's. The stream is read in order, so once the last one is counted the copy has been seen too.
    def verdict(job_id: str, sensor: str) -> str:
        output = {"status": "success", "sensor": sensor, "value": 99.0, "anomaly": True, "score": 0.8, "deviation": 9.0}
        return result_message(output, job_id, {"seq": 7, "sent_at": time.time()})

    async def send(messages: list[str]) -> None:
        backend = TaskiqBackend(redis_server.url)
        try:
            for message in messages:
                await backend.send(stream.QUEUE, message)
        finally:
            await backend.close()

    client = redis.Redis.from_url(redis_server.url)
    first = verdict("job-1", "boiler")
    with taskiq_worker(redis_server.url, tmp_path / "worker.log", "--max-async-tasks", "1"):
        asyncio.run(send([first, first, verdict("job-2", "chiller")]))
        wait_for(lambda: client.hget("analytics:readings", "chiller") is not None)

    assert client.hgetall("analytics:readings") == {b"boiler": b"1", b"chiller": b"1"}
    assert client.llen("analytics:anomalies") == 2
    assert client.llen("analytics:lag_ms") == 2
