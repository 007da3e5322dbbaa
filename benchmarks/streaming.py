"""Streaming benchmark: time to first chunk and chunks per second for many concurrent SSE streams.

    uv run python benchmarks/streaming.py [--seconds 4] [--concurrency 1,16,64]

Serves benchmarks/apps/stream_app.py (a simulated token model: 10 ms per step for the whole batch, 32 tokens per
prompt) with ``modalkit serve``; c clients each open streams back to back for the window and read them with an
SSE reader over httpx. Prints median and p90 time to first chunk, chunks/s, and the bound: with every stream
in one batch, the model makes one chunk per stream every 10 ms, so c streams cannot exceed c * 100 chunks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from modalkit.testing import ModalkitServer

HERE = Path(__file__).parent
STEP_SECONDS = 0.01
TOKENS = 32


async def client(url: str, until: float, ttft: list[float], counts: list[int]) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        while time.perf_counter() < until:
            start = time.perf_counter()
            first = True
            async with http.stream("POST", f"{url}/predict_stream", json={"text": "go"}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and not line.startswith('data: {"status"'):
                        if first:
                            ttft.append(time.perf_counter() - start)
                            first = False
                        counts[0] += 1


async def run(url: str, concurrency: int, seconds: float) -> tuple[list[float], float]:
    ttft: list[float] = []
    counts = [0]
    start = time.perf_counter()
    await asyncio.gather(*(client(url, start + seconds, ttft, counts) for _ in range(concurrency)))
    return ttft, counts[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as logs,
        ModalkitServer(
            HERE / "apps" / "stream_app.py",
            ["--log-level", "WARNING"],
            config=HERE / "apps" / "stream_app.yaml",
            log_dir=logs,
        ) as server,
    ):
        print(f"{'c':>4} {'ttft p50 ms':>12} {'ttft p90 ms':>12} {'chunks/s':>10} {'bound':>8} {'% bound':>8}")
        for c in (int(x) for x in args.concurrency.split(",")):
            ttft, rate = asyncio.run(run(server.url, c, args.seconds))
            bound = c / STEP_SECONDS
            p90 = statistics.quantiles(ttft, n=10)[-1] if len(ttft) >= 2 else ttft[0]
            print(
                f"{c:>4} {statistics.median(ttft) * 1000:>12.1f} {p90 * 1000:>12.1f} {rate:>10.0f} {bound:>8.0f} "
                f"{rate / bound * 100:>7.0f}%"
            )


if __name__ == "__main__":
    main()
