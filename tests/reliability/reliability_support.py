"""Helpers for the reliability suite: real servers, bounded load, counting what happened to every async job.

Every loop here is bounded twice, by a count and by a deadline, so a misbehaving server fails a test instead of
hanging the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modalkit_serve.testing import ServedProcess

ROOT = Path(__file__).resolve().parents[2]
SENTIMENT_APP = ROOT / "examples" / "sentiment" / "app.py"
SENTIMENT_CONFIG = SENTIMENT_APP.parent / "modalkit.yaml"
FAULTY_APP = Path(__file__).resolve().parent / "apps" / "faulty" / "app.py"
FAULTY_CONFIG = FAULTY_APP.parent / "modalkit.yaml"
# Started the way a user starts it: `modalkit serve APP.py` (as `python -m modalkit`, so any environment works).
MODALKIT_SERVE = [sys.executable, "-m", "modalkit", "serve"]

API_KEY = "reliability-suite-key-7f3a"
OTHER_API_KEY = "reliability-suite-other-key-91c2"
"""A second valid key of the guarded server: another caller."""
API_KEY_ENV = "MODALKIT_RELIABILITY_API_KEY"

# Small limits on the shared servers, so the suite reaches each of them with small requests.
MAX_BODY_BYTES = 65536
MAX_BATCH_ITEMS = 8
MAX_JSON_DEPTH = 8
LIMITS = f"""\
app_settings:
  server_config:
    max_body_bytes: {MAX_BODY_BYTES}
    max_batch_items: {MAX_BATCH_ITEMS}
    max_json_depth: {MAX_JSON_DEPTH}
"""

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def write_overlay(path: Path, text: str) -> Path:
    """Write a YAML overlay (laid over the app's own modalkit.yaml) and return its path."""
    path.write_text(text)
    return path


def start_server(
    app: Path,
    base_config: Path,
    log_dir: Path,
    *overlays: Path,
    env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
    log_level: str = "WARNING",
) -> ServedProcess:
    """``modalkit serve APP --config BASE,OVERLAY...`` on a free loopback port, in its own process group.

    The caller stops it (``server.stop()``: SIGTERM to the group, then SIGKILL), usually from a fixture.
    """
    config = ",".join(str(p) for p in (base_config, *overlays))
    server = ServedProcess(
        app,
        ["--config", config, "--log-level", log_level],
        log_dir=log_dir,
        env=env,
        command=MODALKIT_SERVE,
    )
    server.start()
    if wait_ready:
        try:
            wait_until_ready(server)
        except BaseException:
            server.stop()
            raise
    return server


def wait_until_ready(server: ServedProcess, timeout: float = 60.0) -> None:
    """Poll ``/ready`` until it answers 200 (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the service never became ready; stderr:\n{server.stderr()[-3000:]}")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it holds, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def rss_kib(pid: int) -> int:
    """Resident memory of a process (``VmRSS`` in /proc/PID/status), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def metric(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of a Prometheus sample's values whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in (labels or {}).items()):
            total += float(match.group(2))
    return total


def dead_letters(path: Path) -> list[dict[str, Any]]:
    """The records of a dead-letter file (none when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def job_ids(bodies: Iterable[str]) -> list[str]:
    """The ``job_id`` of each delivered message."""
    return [str(json.loads(body)["job_id"]) for body in bodies]


@dataclass
class Load:
    """What a bounded load run saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    """HTTP status -> count."""
    by_kind: Counter[str] = field(default_factory=Counter)
    """Request kind -> count of answers."""
    errors: list[str] = field(default_factory=list)
    """Unexpected answers and transport errors (at most 50 kept, `error_count` counts all)."""
    error_count: int = 0
    accepted: list[str] = field(default_factory=list)
    """Job ids from 202 answers."""
    items: int = 0
    """Predictions answered (a batch counts its items)."""
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        """Answers received."""
        return sum(self.statuses.values())

    def error(self, text: str) -> None:
        """Record one unexpected outcome."""
        self.error_count += 1
        if len(self.errors) < 50:
            self.errors.append(text)


Request = Callable[[httpx.AsyncClient, int, Load], Awaitable[None]]
"""One request by client ``i`` (its loop counter is the second argument), recording into the `Load`."""


async def run_load(
    url: str,
    request: Request,
    *,
    clients: int,
    seconds: float,
    max_requests_per_client: int,
    request_timeout: float = 30.0,
    stop: Callable[[], bool] | None = None,
) -> Load:
    """``clients`` concurrent clients on loopback, each looping over ``request`` until the time, its count or
    ``stop()`` runs out. A transport error ends that client's loop when ``stop()`` says the server is going away."""
    load = Load()
    deadline = time.monotonic() + seconds
    # Plain HTTP on loopback; one TLS context for all clients, since httpx would load the CA bundle for each.
    tls = ssl.create_default_context()

    async def one(index: int) -> None:
        # A client (and connection pool) per simulated user: one pool shared by 64 concurrent requests costs
        # httpx more per request as concurrency grows.
        async with httpx.AsyncClient(base_url=url, timeout=request_timeout, verify=tls) as client:
            for n in range(max_requests_per_client):
                if time.monotonic() >= deadline or (stop is not None and stop()):
                    return
                try:
                    await request(client, index * max_requests_per_client + n, load)
                except httpx.TransportError as exc:
                    if stop is not None and stop():
                        return
                    load.error(f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(clients)))
    load.seconds = time.monotonic() - started
    return load


def check_json_error(response: httpx.Response) -> str | None:
    """None if ``response`` is a clean JSON error (``detail``, no stack trace), else what is wrong with it."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"{response.status_code}: not JSON ({response.headers.get('content-type')}): {response.text[:200]}"
    if "Traceback" in response.text or 'File "' in response.text:
        return f"{response.status_code}: a stack trace in the body"
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}: invalid JSON body {response.text[:200]}"
    if not isinstance(body, dict) or "detail" not in body:
        return f"{response.status_code}: no detail in {response.text[:200]}"
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Report:
    """Figures from this run, one entry per scenario, written as JSON at the end of the session.

    ``benchmarks/reliability_report.py`` runs the suite and renders these as the table in
    ``benchmarks/RELIABILITY.md``.
    """

    def __init__(self) -> None:
        self.scenarios: dict[str, dict[str, Any]] = {}
        self.path: Path | None = None

    def record(self, scenario: str, tried: str, **figures: Any) -> None:
        """Record (or add to) one scenario's figures; ``tried`` says what was done, for the table."""
        entry = self.scenarios.setdefault(scenario, {"tried": tried})
        entry.update(figures)

    def write(self, path: Path) -> Path:
        """Write the figures as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"scenarios": self.scenarios}, indent=2, sort_keys=True) + "\n")
        self.path = path
        return path


REPORT = Report()
"""The session's figures (a module global: the conftest's terminal summary reads it too)."""


def redis_command(port: int, *args: str) -> bytes:
    """Send one command to a local redis-server over a raw socket (RESP) and return its first reply line."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(parts))
        return sock.recv(65536)


class Mix:
    """A request mix for fault runs: sync, batch and async requests, with the outcomes each may have.

    Args:
        success_queue: Where async results go.
        failure_queue: Where async failures go.
        async_share: Every ``async_share``-th request is async (the rest alternate sync and batch).
        boom_every: Every ``boom_every``-th text says ``boom`` (the faulty model raises on it); 0 for never.
        missing_queue: Every 20th async job goes to this queue (which does not exist), or never when None.
        headers: Sent with every request (an API key).
        tolerated: Statuses that are an expected refusal in this scenario (e.g. 503 while draining): counted
            under ``refused_<status>`` if the body is a clean JSON error, not as errors.
    """

    def __init__(
        self,
        *,
        success_queue: str = "results",
        failure_queue: str = "failures",
        async_share: int = 3,
        boom_every: int = 0,
        missing_queue: str | None = None,
        headers: Mapping[str, str] | None = None,
        tolerated: Iterable[int] = (),
    ) -> None:
        self.success_queue = success_queue
        self.failure_queue = failure_queue
        self.async_share = async_share
        self.boom_every = boom_every
        self.missing_queue = missing_queue
        self.headers = dict(headers or {})
        self.tolerated = frozenset(tolerated)

    def text(self, n: int) -> str:
        if self.boom_every and n % self.boom_every == 0:
            return f"text {n} goes boom"
        return f"text {n} is a good one"

    def _refused(self, kind: str, response: httpx.Response, load: Load) -> bool:
        if response.status_code in self.tolerated and check_json_error(response) is None:
            load.by_kind[f"refused_{response.status_code}"] += 1
            return True
        load.error(f"{kind} {response.status_code}: {response.text[:200]}")
        return False

    async def __call__(self, client: httpx.AsyncClient, n: int, load: Load) -> None:
        if n % self.async_share == 0:
            await self._async(client, n, load)
        elif n % 2:
            await self._sync(client, n, load)
        else:
            await self._batch(client, n, load)

    async def _async(self, client: httpx.AsyncClient, n: int, load: Load) -> None:
        queue = self.success_queue
        if self.missing_queue is not None and n % 20 == 0:
            queue = self.missing_queue
        body = {"message": {"text": self.text(n)}, "success_queue": queue, "failure_queue": self.failure_queue}
        response = await client.post("/predict_async", json=body, headers=self.headers)
        load.statuses[response.status_code] += 1
        if response.status_code == 202:
            load.by_kind["async"] += 1
            load.accepted.append(response.json()["job_id"])
        else:
            self._refused("async", response, load)

    async def _sync(self, client: httpx.AsyncClient, n: int, load: Load) -> None:
        text = self.text(n)
        response = await client.post("/predict_sync", json={"text": text}, headers=self.headers)
        load.statuses[response.status_code] += 1
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        failed_alone = (
            isinstance(body, dict)
            and body.get("status") == "error"
            and str(body.get("error", "")).startswith("ValueError: boom")
        )
        if "boom" in text and response.status_code == 500 and failed_alone:
            # The model raised on this input: it fails alone, with the error and no stack trace.
            load.by_kind["failed_alone"] += 1
            return
        if response.status_code == 200 and isinstance(body, dict) and body.get("status") == "success":
            load.by_kind["sync"] += 1
            load.items += 1
            return
        self._refused("sync", response, load)

    async def _batch(self, client: httpx.AsyncClient, n: int, load: Load) -> None:
        texts = [f"text {n}a is fine", self.text(n), f"text {n}b is fine"]
        response = await client.post("/predict_batch", json=[{"text": t} for t in texts], headers=self.headers)
        load.statuses[response.status_code] += 1
        if response.status_code != 200:
            self._refused("batch", response, load)
            return
        results = response.json()
        expected = ["error" if "boom" in t else "success" for t in texts]
        if [r.get("status") for r in results] != expected:
            load.error(f"batch: expected {expected}, got {response.text[:300]}")
            return
        load.by_kind["batch"] += 1
        load.by_kind["failed_alone"] += expected.count("error")
        load.items += len(texts)


async def read_redis(url: str, *queues: str) -> set[str]:
    """The job ids of every message waiting in these taskiq queues on Redis."""
    from modalkit_queue import TaskiqConsumer

    found: set[str] = set()
    for queue in queues:
        async with TaskiqConsumer(url, queue) as consumer:
            found |= set(job_ids(await consumer.receive_all(max_messages=100_000, wait_seconds=0.5)))
    return found
