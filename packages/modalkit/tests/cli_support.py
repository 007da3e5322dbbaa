"""Running the real ``modalkit`` command in subprocesses, and real servers stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process, without this test run's modalkit and uv project settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MODALKIT_") and k not in {"UV_PROJECT_ENVIRONMENT", "VIRTUAL_ENV", "PYTEST_ADDOPTS"}
    }
    env.update(extra or {})
    return env


def modalkit(
    *args: str, cwd: str | Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m modalkit ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "modalkit", *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Server:
    """A `modalkit serve` process: its base URL and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def get(self, path: str) -> tuple[int, Any]:
        return self._send(urllib.request.Request(self.url + path))  # noqa: S310 (loopback)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (loopback)
            self.url + path, data=data, headers={"content-type": "application/json"}, method="POST"
        )
        return self._send(request)

    @staticmethod
    def _send(request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@contextmanager
def serving(
    args: Sequence[str], *, cwd: str | Path, env: Mapping[str, str] | None = None, startup: float = 60
) -> Iterator[Server]:
    """Start ``modalkit serve ARGS --port 0``, wait until it is ready, stop it by PID (its process group)."""
    workdir = Path(cwd)
    port_file = workdir / f".port-{os.getpid()}-{time.monotonic_ns()}"
    log = port_file.with_suffix(".log")
    command = [sys.executable, "-m", "modalkit", "serve", *args, "--port", "0", "--port-file", str(port_file)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=workdir, env=clean_env(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + startup
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"modalkit serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        server = Server(proc, int(port_file.read_text()), log)
        while server.get("/ready")[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"modalkit serve never became ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
