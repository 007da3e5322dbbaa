"""Serve the simulated GPU model with several batching settings and measure each under the same load.

    uv run python examples/gpu_batching/sweep.py
    uv run python examples/gpu_batching/sweep.py --batch-sizes 1,8,32,64 --wait-ms 0,20 --concurrency 64

For each (max_batch_size, wait_ms) it starts ``modalkit serve app.py`` on a free loopback port (its own
process group, stopped by PID), sends ``--requests`` requests to ``/predict_sync`` with at most
``--concurrency`` in flight (httpx, async), and prints throughput, median and 99th-percentile latency, the mean
batch size the responses report, and the theoretical limit: ``n / (fixed + per_item * n)`` inputs per second
with ``n = min(max_batch_size, concurrency)``, what back-to-back full batches would give.

The load generator is Python (httpx) on the same machine, at a millisecond or more of CPU per request, so on
a small machine it can cap the figures before the server does. Two signs: ``client cpu`` (the share of the wall
time the client spent computing) is high, and ``mean batch`` stays well below ``min(max_batch_size,
concurrency)``. For the server's own figures, use ``benchmarks/serving.py`` (a compiled load generator, wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # batch_cost_model, beside this script

from batch_cost_model import BatchCost  # noqa: E402 (needs the path above)

MODEL = "accel"
BODY = {"values": [0.5, 1.5, 2.0]}


class SweepError(RuntimeError):
    """A server did not start or stop as it should."""


@dataclass(frozen=True)
class Setting:
    """One batching configuration to measure."""

    max_batch_size: int
    wait_ms: int


@dataclass
class LoadResult:
    """What one load run saw."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    """Seconds, one per successful request."""
    batch_sizes: list[int] = field(default_factory=list)
    """The batch size each successful response reported."""
    errors: int = 0
    client_cpu_seconds: float = 0.0
    """CPU time this (client) process used meanwhile: near ``seconds``, the client was the bottleneck."""

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: int) -> float:
        """The p-th percentile latency in seconds (1 <= p <= 99)."""
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1]

    @property
    def client_busy(self) -> float:
        """Share of the wall time the client spent on CPU (0 to 1; 1 means the figures are the client's limit)."""
        return self.client_cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_batch(self) -> float:
        return statistics.fmean(self.batch_sizes) if self.batch_sizes else float("nan")


@dataclass(frozen=True)
class Row:
    """One setting and what it achieved."""

    setting: Setting
    result: LoadResult
    limit: float
    """The theoretical ceiling for this setting, in requests per second."""


def theoretical_limit(cost: BatchCost, max_batch_size: int, concurrency: int) -> float:
    """Requests per second if full batches ran back to back: batches hold at most ``concurrency`` requests."""
    return cost.throughput(max(1, min(max_batch_size, concurrency)))


def server_env(setting: Setting, cost: BatchCost) -> dict[str, str]:
    """The environment for one server: the example's config, overridden by MODALKIT_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODALKIT_")}
    env.update(
        {
            "MODALKIT_CONFIG": str(HERE / "modalkit.yaml"),
            "MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE": str(setting.max_batch_size),
            "MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS": str(setting.wait_ms),
            f"MODALKIT_MODEL_SETTINGS__MODEL_ENTRIES__{MODEL.upper()}__FIXED_MS": repr(cost.fixed_ms),
            f"MODALKIT_MODEL_SETTINGS__MODEL_ENTRIES__{MODEL.upper()}__PER_ITEM_MS": repr(cost.per_item_ms),
        }
    )
    return env


@contextmanager
def served(setting: Setting, cost: BatchCost, *, startup_timeout: float = 90.0) -> Iterator[str]:
    """``modalkit serve app.py`` with this setting on a free loopback port; yields its URL once it is ready."""
    with tempfile.TemporaryDirectory(prefix="modalkit-sweep-") as tmp:
        port_file = Path(tmp) / "port"
        log_path = Path(tmp) / "server.log"
        command = [
            sys.executable, "-m", "modalkit", "serve", str(HERE / "app.py"),
            "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file), "--log-level", "WARNING",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command, env=server_env(setting, cost), cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped below by its PID, with its children
            )  # fmt: skip
        try:
            url = _wait_ready(proc, port_file, log_path, startup_timeout)
            yield url
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], port_file: Path, log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SweepError(f"modalkit serve exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        if port_file.exists():
            url = f"http://127.0.0.1:{int(port_file.read_text())}"
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise SweepError(f"modalkit serve was not ready within {timeout}s:\n{log_path.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def drive(url: str, requests: int, concurrency: int) -> LoadResult:
    """Send ``requests`` requests with at most ``concurrency`` in flight (closed loop: each client sends its next
    request when the previous one is answered)."""
    remaining = requests
    result = LoadResult(seconds=0.0)

    async def one_client() -> None:
        nonlocal remaining
        # One connection per simulated client, each in its own httpx client: a single shared pool of many
        # connections costs httpx milliseconds of CPU per request and would make the client the bottleneck.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
            while remaining > 0:
                remaining -= 1  # no await between the check and this: the event loop cannot interleave here
                started = time.perf_counter()
                try:
                    response = await client.post(f"/predict_sync?model_name={MODEL}", json=BODY)
                except httpx.HTTPError:
                    result.errors += 1
                    continue
                if response.status_code != 200:
                    result.errors += 1
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.batch_sizes.append(int(response.json()["batch_size"]))

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_client() for _ in range(max(1, min(concurrency, requests)))))
    result.seconds = time.perf_counter() - started
    result.client_cpu_seconds = time.process_time() - cpu
    return result


def measure(setting: Setting, cost: BatchCost, *, requests: int, concurrency: int, warmup: int = 20) -> Row:
    """Serve one setting, warm it up, and measure it."""
    with served(setting, cost) as url:
        asyncio.run(drive(url, warmup, concurrency))
        result = asyncio.run(drive(url, requests, concurrency))
    return Row(setting, result, theoretical_limit(cost, setting.max_batch_size, concurrency))


HEADER = (
    f"{'max_batch_size':>14} {'wait_ms':>7} {'req/s':>8} {'limit req/s':>11} "
    f"{'p50 ms':>8} {'p99 ms':>8} {'mean batch':>10} {'errors':>6} {'client cpu':>10}"
)


def format_row(row: Row) -> str:
    r = row.result
    return (
        f"{row.setting.max_batch_size:>14} {row.setting.wait_ms:>7} {r.throughput:>8.1f} {row.limit:>11.1f} "
        f"{r.percentile(50) * 1000:>8.1f} {r.percentile(99) * 1000:>8.1f} {r.mean_batch:>10.1f} {r.errors:>6} "
        f"{r.client_busy:>10.0%}"
    )


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers (got {text!r})") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 0 (got {text!r})")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep and print one line per setting; returns the exit status."""
    parser = argparse.ArgumentParser(prog="sweep.py", description="Measure batching settings on the simulated GPU.")
    parser.add_argument("--batch-sizes", type=_int_list, default=[1, 4, 16, 32], help="max_batch_size values")
    parser.add_argument("--wait-ms", type=_int_list, default=[0, 10], help="wait_ms values")
    parser.add_argument("--requests", type=int, default=400, help="requests per setting (default 400)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--fixed-ms", type=float, default=20.0, help="simulated cost per batch (default 20)")
    parser.add_argument("--per-item-ms", type=float, default=0.5, help="simulated cost per input (default 0.5)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or 0 in args.batch_sizes:
        parser.error("--requests, --concurrency and every --batch-sizes value must be at least 1")
    cost = BatchCost(args.fixed_ms, args.per_item_ms)

    print(
        f"cost model: {cost.fixed_ms:g} ms + {cost.per_item_ms:g} ms per input, one batch at a time; "
        f"{args.requests} requests per setting, {args.concurrency} in flight"
    )
    print(f"unbatched limit: {cost.throughput(1):.1f} req/s")
    print(HEADER, flush=True)
    for size in args.batch_sizes:
        for wait in args.wait_ms:
            try:
                row = measure(Setting(size, wait), cost, requests=args.requests, concurrency=args.concurrency)
            except SweepError as exc:
                print(f"sweep.py: error: {exc}", file=sys.stderr)
                return 1
            print(format_row(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
