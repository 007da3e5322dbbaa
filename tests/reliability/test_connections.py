"""The connection edge, over raw sockets against the real ``modalkit serve``: header limits, slowloris, idle
connections and the bound on open connections (``server_config.max_header_bytes``, ``header_timeout_seconds``,
``keep_alive_timeout_seconds``, ``max_connections``)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.reliability.reliability_support import (
    SENTIMENT_APP,
    SENTIMENT_CONFIG,
    Report,
    start_server,
    write_overlay,
)

from modalkit_serve.testing import ServedProcess

pytestmark = pytest.mark.reliability

MAX_HEADER_BYTES = 8192
HEADER_TIMEOUT = 2.0
KEEP_ALIVE_TIMEOUT = 2.0
MAX_CONNECTIONS = 64


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    logs = tmp_path_factory.mktemp("sentiment-edge")
    overlay = write_overlay(
        logs / "edge.yaml",
        f"""\
app_settings:
  server_config:
    max_header_bytes: {MAX_HEADER_BYTES}
    header_timeout_seconds: {HEADER_TIMEOUT}
    keep_alive_timeout_seconds: {KEEP_ALIVE_TIMEOUT}
    max_connections: {MAX_CONNECTIONS}
""",
    )
    server = start_server(SENTIMENT_APP, SENTIMENT_CONFIG, logs, overlay)
    yield server
    server.stop()


def _connect(server: ServedProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_reply(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        sock.setblocking(True)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_an_oversized_header_block_is_refused_with_431(edge: ServedProcess, report: Report) -> None:
    rss_before = _rss(edge)
    sock = _connect(edge)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: ")
        sent = 0
        try:
            for _ in range(2 * 1024):  # up to 2 MB, one KiB at a time, until the server closes
                sock.sendall(b"a" * 1024)
                sent += 1024
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = _read_reply(sock)
    finally:
        sock.close()
    report.record(
        "headers",
        f"2 MB of headers on one connection against max_header_bytes {MAX_HEADER_BYTES}",
        client_sent_kib=sent // 1024,  # what the client got into socket buffers before it saw the close
        status=reply.split(b" ", 2)[1].decode() if reply else "closed",
    )
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert _rss(edge) - rss_before < 20 * 1024  # KiB: the refused block was not kept
    assert httpx.get(edge.url + "/health", timeout=10).status_code == 200


def test_headers_within_the_limit_are_served(edge: ServedProcess) -> None:
    headers = {f"x-fill-{i}": "v" * 100 for i in range(40)}  # about 4.5 KiB
    assert httpx.get(edge.url + "/health", headers=headers, timeout=10).status_code == 200


def test_slowloris_connections_are_closed_after_the_header_timeout(edge: ServedProcess, report: Report) -> None:
    socks = [_connect(edge) for _ in range(40)]
    started = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        closed: set[int] = set()
        while time.monotonic() - started < HEADER_TIMEOUT * 4 and len(closed) < len(socks):
            for index, sock in enumerate(socks):
                if index in closed:
                    continue
                try:
                    sock.sendall(b"X-Slow: 1\r\n")  # one header line at a time, never the blank line
                except (BrokenPipeError, ConnectionResetError):
                    closed.add(index)
                    continue
                if _closed_by_server(sock):
                    closed.add(index)
            time.sleep(0.25)
        seconds = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    report.record(
        "slowloris",
        f"40 connections sending one header line every 0.25 s; header_timeout_seconds {HEADER_TIMEOUT:g}",
        connections=len(socks),
        closed_by_server=len(closed),
        seconds=round(seconds, 1),
    )
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} slow connections still open after {seconds:.1f}s"
    assert httpx.get(edge.url + "/health", timeout=10).status_code == 200


def test_idle_connections_are_closed(edge: ServedProcess, report: Report) -> None:
    silent = [_connect(edge) for _ in range(30)]  # connect and send nothing
    kept_alive = [_connect(edge) for _ in range(10)]  # one request, then idle on keep-alive
    try:
        for sock in kept_alive:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            sock.settimeout(10)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        deadline = time.monotonic() + max(HEADER_TIMEOUT, KEEP_ALIVE_TIMEOUT) * 4
        while time.monotonic() < deadline:
            still_open = [s for s in silent + kept_alive if not _closed_by_server(s)]
            if not still_open:
                break
            time.sleep(0.2)
    finally:
        for sock in silent + kept_alive:
            sock.close()
    report.record(
        "idle connections",
        f"30 connections that send nothing and 10 idle after one request; header_timeout_seconds "
        f"{HEADER_TIMEOUT:g}, keep_alive_timeout_seconds {KEEP_ALIVE_TIMEOUT:g}",
        connections=40,
        still_open=len(still_open),
    )
    assert still_open == [], f"{len(still_open)} idle connections still open"


def test_open_connections_are_bounded_and_file_descriptors_do_not_run_out(edge: ServedProcess, report: Report) -> None:
    baseline = _open_fds(edge.pid)
    socks = []
    try:
        for _ in range(MAX_CONNECTIONS * 3):
            socks.append(_connect(edge))
        time.sleep(0.5)
        peak = _open_fds(edge.pid)
        refused = sum(1 for s in socks if _closed_by_server(s))
    finally:
        for sock in socks:
            sock.close()
    report.record(
        "connection bound",
        f"{MAX_CONNECTIONS * 3} idle connections at once against max_connections {MAX_CONNECTIONS}",
        connections=len(socks),
        refused_at_once=refused,
        server_fds_over_baseline=peak - baseline,
    )
    assert peak - baseline <= MAX_CONNECTIONS + 8, (baseline, peak)
    assert refused >= len(socks) - MAX_CONNECTIONS - 8
    time.sleep(HEADER_TIMEOUT + 1)
    assert httpx.get(edge.url + "/health", timeout=10).status_code == 200


def _rss(server: ServedProcess) -> int:
    from tests.reliability.reliability_support import rss_kib

    return rss_kib(server.pid)
