"""The open-loop generator: its Poisson schedule, and latencies counted from the scheduled time."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import _openloop


def test_the_schedule_is_a_seeded_poisson_process() -> None:
    a = _openloop.poisson_schedule(rate=500, seconds=20, seed=7)
    assert a == _openloop.poisson_schedule(rate=500, seconds=20, seed=7)
    assert a != _openloop.poisson_schedule(rate=500, seconds=20, seed=8)
    assert a == sorted(a)
    assert a[0] > 0
    assert a[-1] < 20
    # 10,000 arrivals expected; a Poisson count has a standard deviation of 100.
    assert abs(len(a) - 10_000) < 500
    gaps = [b - x for x, b in zip([0.0, *a[:-1]], a, strict=True)]
    # Exponential gaps: mean 1/rate, and the standard deviation equals the mean.
    assert statistics.mean(gaps) == pytest.approx(1 / 500, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(1 / 500, rel=0.1)


def test_the_schedule_refuses_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="rate"):
        _openloop.poisson_schedule(rate=0, seconds=1, seed=0)


class SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay_s = 0.05

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay_s)
        status = 200 if "ok" in self.path else 503
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_latency_counts_from_the_scheduled_time_not_from_the_send(slow_server: int) -> None:
    # One connection, five requests due at once, a server that takes >= 50 ms each: the n-th answer cannot come
    # before n * 50 ms after its (shared) scheduled time. A closed-loop measure would report ~50 ms for each.
    result = asyncio.run(_openloop.run(slow_server, "/ok", b"{}", [0.0] * 5, max_connections=1, drain_s=30))
    latencies = sorted(v for v, n in result.latencies_us.items() for _ in range(n))
    assert len(latencies) == 5
    assert result.connections == 1
    for n, latency in enumerate(latencies, start=1):
        assert latency >= n * SlowHandler.delay_s * 1e6


def test_error_statuses_are_counted_and_the_cli_prints_json(slow_server: int) -> None:
    script = Path(_openloop.__file__)
    argv = [sys.executable, str(script), "--port", str(slow_server), "--path", "/fail", "--body", "{}"]
    proc = subprocess.run([*argv, "--rate", "40", "--seconds", "0.5"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["scheduled"] == len(_openloop.poisson_schedule(40, 0.5, 0))
    assert out["requests"] == out["scheduled"] == out["status_errors"]
    assert out["socket_errors"] == 0


def test_a_refused_connection_is_a_socket_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        result = asyncio.run(_openloop.run(port, "/ok", b"{}", [0.0, 0.01], max_connections=4, drain_s=5))
    assert result.socket_errors == 2
    assert not result.latencies_us
