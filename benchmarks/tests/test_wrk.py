"""The wrk output parsing and latency un-correction used by benchmarks/serving.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import _wrk


def wrk_correct(original: dict[int, int], interval: int) -> dict[int, int]:
    """What wrk 4.x's stats_correct() does to its latency histogram before done() sees it (src/stats.c)."""
    data = dict(original)
    top = max(original)
    for n in range(2 * interval, top + 1):
        count = original.get(n, 0)  # buckets >= n are never touched before n is read
        m = n - interval
        while count and m > interval:
            data[m] = data.get(m, 0) + count
            m -= interval
    return data


def test_uncorrect_recovers_the_latencies_requests_had() -> None:
    original = {900: 5, 1000: 40, 1100: 30, 2500: 3, 7000: 1, 15000: 2}
    corrected = wrk_correct(original, interval=1000)
    assert corrected != original  # the correction really added samples
    assert _wrk.uncorrect(corrected, interval=1000) == original


def test_uncorrect_refuses_a_histogram_wrk_cannot_have_made() -> None:
    with pytest.raises(_wrk.WrkError, match="correction"):
        _wrk.uncorrect({1500: 1, 2500: 4}, interval=1000)


def test_percentile_is_nearest_rank() -> None:
    hist = {10: 50, 20: 49, 900: 1}
    assert _wrk.percentile(hist, 50) == 10
    assert _wrk.percentile(hist, 99) == 20
    assert _wrk.percentile(hist, 99.5) == 900
    assert _wrk.percentile(hist, 100) == 900


def test_parse_reads_the_lines_the_lua_script_prints() -> None:
    out = textwrap.dedent(
        """\
        Running 1s test @ http://127.0.0.1:1/x
          1 threads and 2 connections
        Requests/sec:     10.00
        BENCH_SUMMARY 1000000 10 2000 0 1 0 2 0
        BENCH_HIST 100 6
        BENCH_HIST 250 4
        """
    )
    run = _wrk.parse_output(out, connections=2)
    assert run.requests == 10
    assert run.duration_s == 1.0
    assert run.status_errors == 2
    assert run.socket_errors == 1
    assert run.corrected == {100: 6, 250: 4}
    assert run.interval_us == 1000000 // (10 // 2)


def test_parse_fails_clearly_without_the_summary_line() -> None:
    with pytest.raises(_wrk.WrkError, match="BENCH_SUMMARY"):
        _wrk.parse_output("Requests/sec: 1\n", connections=1)


SLOW_SERVER = textwrap.dedent(
    """\
    import sys, time, itertools
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    counter = itertools.count()
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = -1  # headers and body leave in one write
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            # one request in twenty is slow: the tail that wrk's correction inflates
            time.sleep(0.1 if next(counter) % 20 == 19 else 0.002)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # wrk closes its connections mid-request when the window ends
    Server(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    script = tmp_path / "slow_server.py"
    script.write_text(SLOW_SERVER)
    proc = subprocess.Popen([sys.executable, str(script), str(port)], start_new_session=True)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_real_wrk_run_accounts_for_every_request(slow_server: int) -> None:
    run = _wrk.run_wrk(f"http://127.0.0.1:{slow_server}/predict", body='{"x": 1}', connections=1, threads=1, seconds=2)
    assert run.requests > 0
    assert run.errors == 0
    # Every completed request has exactly one latency once wrk's synthetic samples are removed.
    assert sum(run.latencies.values()) == run.requests
    assert sum(run.corrected.values()) > run.requests
