"""Run wrk in its own process and read back the latency every request really had.

wrk 4.x records one latency per request, but before it prints its percentiles or calls the Lua ``done()`` hook
it "corrects for coordinated omission" (``stats_correct`` in wrk's src/stats.c): with ``e`` the mean time
between two requests on one connection, every sample ``n >= 2e`` adds one synthetic sample at ``n - e``,
``n - 2e``, ... down to just above ``e``. That models an open-loop client that would have sent requests while
the connection waited. Our clients are closed-loop (a fixed number of connections, like callers that wait for
their answer), so we report the latencies the requests actually had: ``wrk_post.lua`` prints the corrected
histogram and :func:`uncorrect` removes the synthetic samples exactly. A check that the result holds exactly
one sample per completed request guards against a wrk build that corrects differently.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
WRK_MISSING = "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or build it from github.com/wg/wrk"


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something this harness cannot read."""


@dataclass(frozen=True)
class WrkRun:
    """One wrk window, as wrk measured it."""

    duration_s: float
    requests: int
    connections: int
    status_errors: int
    """Responses with a status above 399 (what wrk counts as non-2xx/3xx)."""
    socket_errors: int
    """Connect, read, write and timeout errors."""
    corrected: dict[int, int]
    """wrk's latency histogram (microseconds -> count) after its coordinated-omission correction."""
    latencies: dict[int, int] = field(default_factory=dict)
    """The latencies requests really had (microseconds -> count): `corrected` minus the synthetic samples."""

    @property
    def interval_us(self) -> int:
        """The ``expected`` interval wrk used for its correction, computed as wrk computes it (integer maths)."""
        per_connection = self.requests // self.connections
        return int(self.duration_s * 1_000_000) // per_connection if per_connection else 0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors


def find_wrk() -> str:
    """The wrk binary, or a `WrkError` saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkError(WRK_MISSING)
    return path


def uncorrect(corrected: dict[int, int], interval: int) -> dict[int, int]:
    """Remove the samples wrk's coordinated-omission correction added.

    For a bucket ``m > e``, wrk's correction leaves ``corrected[m] = original[m] + sum_k original[m + k*e]``
    (``k >= 1``), so ``original[m] = corrected[m] - corrected[m + e]``; buckets ``<= e`` are untouched.

    Raises:
        WrkError: the histogram cannot come from that correction (a negative count would result).
    """
    if interval <= 0:
        return {m: c for m, c in corrected.items() if c}
    original: dict[int, int] = {}
    for m, count in corrected.items():
        value = count - corrected.get(m + interval, 0) if m > interval else count
        if value < 0:
            raise WrkError(
                f"wrk's latency histogram does not match the coordinated-omission correction this harness undoes "
                f"(bucket {m} us would hold {value} samples, interval {interval} us); is this wrk 4.x?"
            )
        if value:
            original[m] = value
    return original


def percentile(hist: dict[int, int], p: float) -> int:
    """Nearest-rank percentile of a histogram (value -> count); 0 for an empty histogram."""
    total = sum(hist.values())
    if total == 0:
        return 0
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value
    return max(hist)


def parse_output(stdout: str, connections: int) -> WrkRun:
    """Read the ``BENCH_SUMMARY`` and ``BENCH_HIST`` lines that ``wrk_post.lua``'s ``done()`` prints."""
    summary: list[int] | None = None
    hist: dict[int, int] = {}
    for line in stdout.splitlines():
        if line.startswith("BENCH_SUMMARY "):
            summary = [int(float(x)) for x in line.split()[1:]]
        elif line.startswith("BENCH_HIST "):
            _, value, count = line.split()
            hist[int(float(value))] = int(float(count))
    if summary is None or len(summary) != 8:
        raise WrkError(f"wrk printed no BENCH_SUMMARY line (was it run with {LUA_SCRIPT.name}?):\n{stdout[-2000:]}")
    duration_us, requests, _bytes, connect, read, write, status, timeout = summary
    return WrkRun(
        duration_s=duration_us / 1_000_000,
        requests=requests,
        connections=connections,
        status_errors=status,
        socket_errors=connect + read + write + timeout,
        corrected=hist,
    )


def run_wrk(url: str, body: str, connections: int, threads: int, seconds: float, timeout_s: int = 30) -> WrkRun:
    """Run one wrk window of ``seconds`` against ``url`` with a JSON POST of ``body``; return what requests had.

    ``timeout_s`` is generous on purpose: wrk sizes its histogram by it and counts slower answers as errors.

    Raises:
        WrkError: wrk is missing or failed, or its latency histogram does not add up.
    """
    wrk = find_wrk()
    argv = [
        wrk,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        f"--timeout={timeout_s}s",
        f"--script={LUA_SCRIPT}",
        url,
    ]
    env = {**os.environ, "BENCH_BODY": body}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 120, check=False)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout[-2000:]}")
    if proc.stderr.strip():
        # wrk reports Lua errors on stderr but still exits 0.
        raise WrkError(f"wrk reported: {proc.stderr.strip()}")
    run = parse_output(proc.stdout, connections)
    latencies = uncorrect(run.corrected, run.interval_us) if run.requests // connections > 0 else run.corrected
    timeouts_beyond_histogram = run.socket_errors  # answers slower than timeout_s are counted as errors, not sampled
    if not run.requests - timeouts_beyond_histogram <= sum(latencies.values()) <= run.requests:
        raise WrkError(
            f"wrk completed {run.requests} requests but the un-corrected histogram holds "
            f"{sum(latencies.values())} samples; this wrk corrects latencies differently"
        )
    return WrkRun(
        duration_s=run.duration_s,
        requests=run.requests,
        connections=connections,
        status_errors=run.status_errors,
        socket_errors=run.socket_errors,
        corrected=run.corrected,
        latencies=latencies,
    )
