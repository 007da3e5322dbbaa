"""An open-loop load generator: requests arrive on a Poisson schedule, whatever the server's answers do.

wrk is a closed loop: each connection sends its next request only after its answer, so a slow server is sent
less. Real traffic does not wait: users arrive at their own rate. Here the arrival times are drawn up front
(exponential gaps at ``rate`` per second, from a seed) and each request is sent at its time on an idle
keep-alive connection, or a new one. A request's latency runs from its *scheduled* time to its answer, so time
spent waiting for a free connection, or behind a generator that fell behind, counts against the server as a
user would see it (no coordinated omission). How far sends fell behind their schedule is reported, so a run
whose generator could not keep up is visible as such.

Run as a process of its own (so it does not share a GIL with anything else being measured):

    python benchmarks/_openloop.py --port 8000 --path '/predict_sync?model_name=accel' \\
        --body '{"text": "hi"}' --rate 300 --seconds 5

It prints one JSON object: requests, status and socket errors, the latency histogram (microseconds -> count)
and the send lateness. Standard library only (uvloop when it is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

HOST = "127.0.0.1"


def poisson_schedule(rate: float, seconds: float, seed: int) -> list[float]:
    """Arrival offsets (seconds from the start) of a Poisson process at ``rate`` per second over ``seconds``."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be > 0")
    rng = random.Random(seed)
    out: list[float] = []
    t = rng.expovariate(rate)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(rate)
    return out


@dataclass
class Result:
    """What one open-loop run saw."""

    scheduled: int = 0
    latencies_us: Counter[int] = field(default_factory=Counter)
    status_errors: int = 0
    socket_errors: int = 0
    lateness_us: list[int] = field(default_factory=list)
    connections: int = 0

    def to_json(self, seconds: float) -> dict[str, object]:
        late = sorted(self.lateness_us)
        return {
            "duration_s": seconds,
            "scheduled": self.scheduled,
            "requests": sum(self.latencies_us.values()),
            "status_errors": self.status_errors,
            "socket_errors": self.socket_errors,
            "connections": self.connections,
            "latencies_us": {str(k): v for k, v in sorted(self.latencies_us.items())},
            "p99_lateness_us": late[max(0, math.ceil(0.99 * len(late)) - 1)] if late else 0,
            "max_lateness_us": late[-1] if late else 0,
        }


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Client:
    """Keep-alive HTTP/1.1 connections to one server, at most ``max_connections`` of them.

    The slots are a last-in-first-out queue holding idle connections on top of ``None`` placeholders (a slot
    with no connection yet): a request takes the most recently used connection, opens a new one only when none
    is idle, and waits its turn when all ``max_connections`` are busy.
    """

    def __init__(self, port: int, path: str, body: bytes, max_connections: int, result: Result) -> None:
        self.port = port
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.result = result
        self.slots: asyncio.LifoQueue[Connection | None] = asyncio.LifoQueue()
        for _ in range(max_connections):
            self.slots.put_nowait(None)

    async def send(self, scheduled: float) -> None:
        conn = await self.slots.get()
        try:
            if conn is None:
                conn = await asyncio.open_connection(HOST, self.port)
                self.result.connections += 1
            reader, writer = conn
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.result.socket_errors += 1
            if conn is not None:
                conn[1].close()
            self.slots.put_nowait(None)
            return
        self.result.latencies_us[int((time.perf_counter() - scheduled) * 1e6)] += 1
        if status >= 400:
            self.result.status_errors += 1
        self.slots.put_nowait(conn)

    def close(self) -> None:
        while not self.slots.empty():
            conn = self.slots.get_nowait()
            if conn is not None:
                conn[1].close()


async def run(port: int, path: str, body: bytes, offsets: list[float], max_connections: int, drain_s: float) -> Result:
    """Send one request at each offset; wait up to ``drain_s`` after the last for the answers."""
    result = Result(scheduled=len(offsets))
    client = Client(port, path, body, max_connections, result)
    tasks = []
    start = time.perf_counter() + 0.05
    for offset in offsets:
        due = start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result.lateness_us.append(max(0, int((time.perf_counter() - due) * 1e6)))
        tasks.append(asyncio.ensure_future(client.send(due)))
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=drain_s)
        for task in pending:
            task.cancel()
        result.socket_errors += len(pending)
    client.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--rate", type=float, required=True, help="mean arrivals per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--drain-seconds", type=float, default=30)
    args = parser.parse_args(argv)
    try:
        import uvloop  # optional: a faster generator where it is installed

        uvloop.install()
    except ImportError:
        pass
    offsets = poisson_schedule(args.rate, args.seconds, args.seed)
    result = asyncio.run(
        run(args.port, args.path, args.body.encode(), offsets, args.max_connections, args.drain_seconds)
    )
    print(json.dumps(result.to_json(args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
