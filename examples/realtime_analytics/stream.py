"""Send a stream of sensor readings to the service at a steady rate, then report throughput, lag and anomalies.

    uv run python examples/realtime_analytics/stream.py --events 5000 --rate 1000

Readings come from ``--sensors`` sensors, each at its own level with some noise; ``--anomalies`` of them are
spikes (the sensor's level plus 15). Each reading is sent at its time on the schedule (an open loop: a slow
service is not sent less) as one ``POST /predict_async`` with ``meta = {"seq": n, "sent_at": <unix time>}``.
When every accepted reading has reached the worker (``worker.py``'s totals in Redis), it prints what it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

QUEUE = "readings-scored"
SPIKE = 15.0


@dataclass
class Report:
    """What one run of the stream saw."""

    sent: int = 0
    accepted: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    """HTTP status -> count, for readings the service did not accept."""
    send_seconds: float = 0.0
    consumed: int = 0
    consume_seconds: float = 0.0
    """From the first send until the worker had the last accepted reading."""
    lag_ms: list[float] = field(default_factory=list)
    injected: set[int] = field(default_factory=set)
    flagged: set[int] = field(default_factory=set)

    def lines(self) -> list[str]:
        lag = sorted(self.lag_ms)

        def pct(p: float) -> float:
            return lag[min(len(lag) - 1, int(p / 100 * len(lag)))] if lag else float("nan")

        caught = len(self.injected & self.flagged)
        return [
            f"sent {self.sent} readings in {self.send_seconds:.2f} s ({self.sent / self.send_seconds:,.0f}/s); "
            f"accepted {self.accepted}" + (f", refused {self.refused}" if self.refused else ""),
            f"the worker had all {self.consumed} after {self.consume_seconds:.2f} s "
            f"({self.consumed / self.consume_seconds:,.0f} readings/s end to end)",
            f"lag from send to worker: p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {lag[-1] if lag else 0:.1f} ms",
            f"anomalies: {caught} of {len(self.injected)} spikes caught, "
            f"{len(self.flagged - self.injected)} other readings flagged",
        ]


def readings(events: int, sensors: int, anomalies: int, seed: int) -> tuple[list[dict[str, object]], set[int]]:
    """The stream: ``events`` readings, and the positions of the injected spikes."""
    rng = random.Random(seed)
    levels = [18.0 + 0.5 * i for i in range(sensors)]
    out: list[dict[str, object]] = []
    for n in range(events):
        s = n % sensors
        out.append({"sensor": f"sensor-{s}", "value": round(rng.gauss(levels[s], 1.0), 3)})
    # Spikes after every sensor has some history (its first readings have none to deviate from).
    warm = min(sensors * 20, events // 2)
    spikes = set(rng.sample(range(warm, events), min(anomalies, events - warm)))
    for n in spikes:
        out[n]["value"] = round(levels[n % sensors] + SPIKE, 3)
    return out, spikes


async def send_all(url: str, stream: list[dict[str, object]], rate: float, report: Report, connections: int) -> None:
    """Send each reading at its time on the schedule, over ``connections`` keep-alive HTTP/1.1 connections.

    A small client of its own (asyncio streams): a general-purpose client's connection pool costs more CPU per
    request than the service does at these rates. A reading whose time came while every connection was busy
    waits for the next free one.
    """
    host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
    due: asyncio.Queue[tuple[int, dict[str, object]] | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port or 80))
        try:
            while (job := await due.get()) is not None:
                seq, reading = job
                body = json.dumps(
                    {
                        "message": reading,
                        "success_queue": QUEUE,
                        "failure_queue": QUEUE,
                        "meta": {"seq": seq, "sent_at": time.time()},
                    }
                ).encode()
                head = f"POST /predict_async HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                response = await reader.readuntil(b"\r\n\r\n")
                status = int(response[9:12])
                lines = response.lower().split(b"\r\n")
                length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
                await reader.readexactly(length)
                if status == 202:
                    report.accepted += 1
                else:
                    report.refused[status] = report.refused.get(status, 0) + 1
        finally:
            writer.close()

    workers = [asyncio.ensure_future(connection()) for _ in range(connections)]
    start = time.perf_counter()
    for seq, reading in enumerate(stream):
        delay = start + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((seq, reading))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    report.sent = len(stream)
    report.send_seconds = time.perf_counter() - start


async def run(
    url: str,
    redis_url: str,
    *,
    events: int,
    rate: float,
    sensors: int,
    anomalies: int,
    seed: int,
    wait_s: float,
    connections: int = 32,
) -> Report:
    """Send the stream, wait until the worker counted every accepted reading (or ``wait_s`` passed), report."""
    stream, spikes = readings(events, sensors, anomalies, seed)
    report_ = Report(injected=spikes)
    redis = aioredis.from_url(redis_url)
    try:
        await redis.delete("analytics:readings", "analytics:anomalies", "analytics:failures", "analytics:lag_ms")
        start = time.perf_counter()
        await send_all(url, stream, rate, report_, connections)
        deadline = time.perf_counter() + wait_s
        while True:
            counts = await redis.hvals("analytics:readings")
            report_.consumed = sum(int(c) for c in counts) + await redis.llen("analytics:failures")
            if report_.consumed >= report_.accepted or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.02)
        report_.consume_seconds = time.perf_counter() - start
        report_.lag_ms = [float(x) for x in await redis.lrange("analytics:lag_ms", 0, -1)]
        report_.flagged = {json.loads(a)["seq"] for a in await redis.lrange("analytics:anomalies", 0, -1)}
    finally:
        await redis.aclose()
    return report_


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="where worker.py keeps its totals")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=1000, help="readings per second")
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--anomalies", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for the worker after the last send")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections to the service")
    args = parser.parse_args(argv)
    report = asyncio.run(
        run(
            args.url,
            args.redis_url,
            events=args.events,
            rate=args.rate,
            sensors=args.sensors,
            anomalies=args.anomalies,
            seed=args.seed,
            wait_s=args.wait,
            connections=args.connections,
        )
    )
    print("\n".join(report.lines()))
    return 0 if report.consumed >= report.accepted == report.sent else 1


if __name__ == "__main__":
    sys.exit(main())
