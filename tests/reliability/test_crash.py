"""kill -9 of the real server during bursts of async jobs: with the journal, no accepted job is lost.

Each round starts ``modalkit serve`` on the same journal file, sends a burst of 200 async jobs, and SIGKILLs the
server's process group at a random moment of the burst: after a random number of 202s (the seed is recorded in
the figures). The
next round's server replays what the journal says never finished. After the last round one more server drains
the journal, then stops. Over all rounds every job that got its 202 must be delivered (read back from the queue
and de-duplicated by job id) or dead-lettered (the dead-letter file and the journal's dead-lettered rows).

The memory backend lives in the server process, so what it received dies with it: for it the journal's own
record (``delivered``, acknowledged by the sender) is what is counted.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import time
from collections import Counter
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
    Report,
    dead_letters,
    job_ids,
    read_redis,
    start_server,
    write_overlay,
)

from modalkit_queue import receive_sqs
from modalkit_serve.testing import ServedProcess

if TYPE_CHECKING:  # at run time another conftest module may stand under that name
    from conftest import InProcessMoto as Endpoint

pytestmark = pytest.mark.reliability

ROUNDS = 5
BURST = 200
CLIENTS = 32
QUEUES = ("crash-results", "crash-failures")
# Patient enough for the queue-down round (a result waits for its queue), short enough for the suite.
RETRY = "retry: {max_attempts: 60, initial_backoff_seconds: 0.05, max_backoff_seconds: 0.5}"
UNFINISHED = ("accepted", "running", "result_ready")


def journal_states(path: Path) -> dict[str, str]:
    """job id -> state, read from the journal file (another process's WAL database, read-only)."""
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return dict(conn.execute("SELECT job_id, state FROM jobs").fetchall())


async def burst(
    url: str,
    n: int,
    texts: Callable[[int], str],
    accepted: set[str],
    go: asyncio.Event,
    kill: tuple[int, asyncio.Event],
) -> None:
    """Send ``n`` async jobs from CLIENTS clients (connected before ``go``); add the ids whose 202 arrived.

    ``kill`` is (a count, an event): the event is set once that many 202s have arrived.
    """
    todo = list(range(n))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            await http.get("/health")  # connected: the burst itself is not spent opening connections
            await go.wait()
            while todo:
                i = todo.pop()
                body = {"message": {"text": texts(i)}, "success_queue": QUEUES[0], "failure_queue": QUEUES[1]}
                try:
                    response = await http.post("/predict_async", json=body)
                except httpx.TransportError:
                    return  # killed
                if response.status_code == 202:
                    accepted.add(response.json()["job_id"])
                    if len(accepted) >= kill[0]:
                        kill[1].set()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


class Crashes:
    """Rounds of start, burst, kill -9 on one journal; then a last server that drains it."""

    def __init__(self, tmp_path: Path, queue_config: str, env: dict[str, str] | None = None) -> None:
        self.journal = tmp_path / "jobs.sqlite"
        self.dead_file = tmp_path / "dead.jsonl"
        self.tmp_path = tmp_path
        self.overlay = write_overlay(
            tmp_path / "crash.yaml",
            f"""\
app_settings:
  queue_config:
    {queue_config}
    dead_letter: {{file: {self.dead_file}}}
  server_config:
    journal_path: {self.journal}
    request_timeout_seconds: 30
model_settings:
  model_entries:
    faulty: {{batch_sleep_ms: 15}}
""",
        )
        self.env = env
        self.accepted: set[str] = set()
        self.seed = random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        self.kills: list[int] = []
        self.drain_seconds = 0.0

    def start(self) -> ServedProcess:
        return start_server(FAULTY_APP, FAULTY_CONFIG, self.tmp_path, self.overlay, env=self.env)

    async def round(self, number: int, before_kill: Callable[[], Awaitable[None]] | None = None) -> None:
        server = await asyncio.to_thread(self.start)
        try:
            # A random moment of the burst, whatever the machine's speed: once this many 202s have arrived
            # (with CLIENTS more requests in flight and the rest not sent yet).
            kill_after = self.rng.randrange(5, BURST - CLIENTS)
            accepted: set[str] = set()
            go, reached = asyncio.Event(), asyncio.Event()

            def texts(i: int) -> str:
                # Every 25th text makes the faulty model raise: those results go to the failure queue.
                return f"boom {number}-{i}" if i % 25 == 0 else f"job {number}-{i}"

            sending = asyncio.ensure_future(burst(server.url, BURST, texts, accepted, go, (kill_after, reached)))
            await asyncio.sleep(0.5)  # the clients connect
            go.set()
            waiting = asyncio.ensure_future(reached.wait())
            await asyncio.wait({waiting, sending}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if before_kill is not None:
                await before_kill()
            server.signal(signal.SIGKILL)
            self.kills.append(len(accepted))
            await sending
            self.accepted |= accepted
            await asyncio.to_thread(server.wait, 30)
        finally:
            await asyncio.to_thread(server.stop)

    async def drain(self, within: float = 120) -> int:
        """A last server on the journal: wait until it finished every job, then stop it (SIGTERM drains)."""
        server = await asyncio.to_thread(self.start)
        started = time.monotonic()
        try:
            left: dict[str, int] = {}
            while time.monotonic() - started < within:
                left = Counter(s for s in journal_states(self.journal).values() if s in UNFINISHED)
                if not left:
                    break
                await asyncio.sleep(0.2)
            self.drain_seconds = round(time.monotonic() - started, 1)
            assert not left, f"after {within:g}s the journal still has {left}; stderr:\n{server.stderr()[-3000:]}"
            code = await asyncio.to_thread(server.stop)
            assert "unhandled error" not in server.stderr()
        finally:
            await asyncio.to_thread(server.stop)
        return code if code is not None else 0

    def account(self, report: Report, scenario: str, tried: str, delivered: set[str], **more: Any) -> None:
        states = journal_states(self.journal)
        dead = {r["job_id"] for r in dead_letters(self.dead_file)}
        dead |= {job for job, state in states.items() if state == "dead_lettered"}
        accepted = self.accepted
        report.record(
            scenario,
            tried,
            requests=len(self.kills) * BURST,
            errors=0,
            jobs_accepted=len(accepted),
            jobs_delivered=len(delivered & accepted),
            jobs_dead_lettered=len((dead - delivered) & accepted),
            kills=len(self.kills),
            accepted_at_each_kill=self.kills,
            seed=self.seed,
            seconds_to_finish_after_the_last_restart=self.drain_seconds,
            **more,
        )
        assert len(self.kills) >= ROUNDS
        assert accepted, "no job was accepted before the kills"
        lost = accepted - delivered - dead
        assert not lost, f"lost {len(lost)} of {len(accepted)} (seed {self.seed}): {sorted(lost)[:5]}"
        assert not [job for job, state in states.items() if state in UNFINISHED], "the journal still has work"


async def test_kill_9_during_bursts_loses_no_job_with_the_memory_backend(tmp_path: Path, report: Report) -> None:
    crashes = Crashes(tmp_path, "backend: memory")
    for number in range(ROUNDS):
        await crashes.round(number)
    assert await crashes.drain() in (0, -signal.SIGTERM)
    delivered = {job for job, state in journal_states(crashes.journal).items() if state == "delivered"}
    crashes.account(
        report,
        "kill -9 during bursts (memory queue)",
        f"{ROUNDS} rounds: 200 async jobs from {CLIENTS} clients, SIGKILL of `modalkit serve` at a random moment, "
        "restart on the same journal; delivered counted from the journal (the memory queue dies with the process)",
        delivered,
    )


async def test_kill_9_during_bursts_loses_no_job_with_sqs(endpoint: Endpoint, tmp_path: Path, report: Report) -> None:
    endpoint.start()
    sqs = boto3.client("sqs", endpoint_url=endpoint.url)
    for queue in QUEUES:
        sqs.create_queue(QueueName=queue)
    sqs_config = f'backend: sqs\n    sqs: {{endpoint_url: "{endpoint.url}", region_name: us-east-1}}\n    {RETRY}'
    crashes = Crashes(tmp_path, sqs_config, env=AWS_ENV)
    for number in range(ROUNDS):
        await crashes.round(number)

    async def sqs_down() -> None:
        await asyncio.to_thread(endpoint.stop)

    # The queue is down while the server dies; both come back, the queue first.
    await crashes.round(ROUNDS, before_kill=sqs_down)
    await asyncio.to_thread(endpoint.start)
    assert await crashes.drain() in (0, -signal.SIGTERM)
    delivered: set[str] = set()
    for queue in QUEUES:
        bodies = await asyncio.to_thread(receive_sqs, queue, max_messages=10_000, endpoint_url=endpoint.url)
        delivered |= set(job_ids(bodies))
    crashes.account(
        report,
        "kill -9 during bursts (SQS)",
        f"{ROUNDS} rounds: 200 async jobs from {CLIENTS} clients to SQS (moto), SIGKILL of `modalkit serve` at a "
        "random moment, restart on the same journal; one more round with the SQS endpoint stopped before the kill, "
        "then the endpoint and the server back",
        delivered,
    )


async def test_kill_9_during_bursts_loses_no_job_with_taskiq(
    persistent_redis: Any, tmp_path: Path, report: Report
) -> None:
    crashes = Crashes(tmp_path, f"backend: taskiq\n    broker_url: {persistent_redis.url}\n    {RETRY}")
    for number in range(ROUNDS):
        await crashes.round(number)

    async def redis_down() -> None:
        await asyncio.to_thread(persistent_redis.stop)

    await crashes.round(ROUNDS, before_kill=redis_down)
    await asyncio.to_thread(persistent_redis.start)
    assert await crashes.drain() in (0, -signal.SIGTERM)
    delivered = await read_redis(persistent_redis.url, *QUEUES)
    crashes.account(
        report,
        "kill -9 during bursts (taskiq on Redis)",
        f"{ROUNDS} rounds: 200 async jobs from {CLIENTS} clients to taskiq on a real redis-server, SIGKILL of "
        "`modalkit serve` at a random moment, restart on the same journal; one more round with redis-server "
        "stopped before the kill, then Redis and the server back",
        delivered,
    )
