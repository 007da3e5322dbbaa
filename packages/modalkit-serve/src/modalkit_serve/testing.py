"""Run a service as a real server process in tests: ``modalkit-serve APP.py`` on a free loopback port.

Example::

    from modalkit_serve.testing import ServedProcess

    def test_my_service(tmp_path):
        with ServedProcess("app.py", log_dir=tmp_path) as server:
            response = httpx.post(f"{server.url}/predict_sync", json={"text": "hi"})
            assert response.status_code == 200

The process runs in its own session (process group), binds 127.0.0.1 on a port the OS picks, and is stopped by
signalling its group (SIGTERM, then SIGKILL after a grace period). Its stderr (the JSON log) goes to a file
whose path the object exposes, for debugging a failed test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["ServedProcess"]


class ServedProcess:
    """A ``modalkit-serve`` server process.

    Args:
        app: The app file.
        args: More CLI arguments (``--config``, ``--log-level``, ...).
        log_dir: Where the server's stdout/stderr and port file go (default: the current directory).
        env: Extra environment variables for the server.
        command: The command to start instead of ``python -m modalkit_serve.cli`` (e.g. the ``modalkit serve``
            CLI); ``APP --host 127.0.0.1 --port 0 --port-file FILE`` and ``args`` are appended.
        startup_timeout: Seconds to wait for the server to accept connections.
    """

    def __init__(
        self,
        app: str | os.PathLike[str],
        args: Sequence[str] = (),
        *,
        log_dir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.app = Path(app)
        self.args = list(args)
        self.log_dir = Path(log_dir) if log_dir is not None else Path.cwd()
        self.env = dict(env or {})
        self.command = list(command) if command is not None else [sys.executable, "-m", "modalkit_serve.cli"]
        self.startup_timeout = startup_timeout
        stem = f"modalkit-serve-{self.app.stem}-{os.getpid()}-{time.monotonic_ns()}"
        self.port_file = self.log_dir / f"{stem}.port"
        self.stderr_path = self.log_dir / f"{stem}.stderr.log"
        self.stdout_path = self.log_dir / f"{stem}.stdout.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's PID (also its process group id)."""
        if self.process is None:
            raise RuntimeError("the server was not started")
        return self.process.pid

    def stderr(self) -> str:
        """What the server wrote to stderr so far (its JSON log)."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def start(self) -> Self:
        """Start the server and wait until it accepts connections.

        Raises:
            RuntimeError: it exited or did not come up in time (the message includes the end of its stderr).
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        stdout = self.stdout_path.open("wb")
        stderr = self.stderr_path.open("wb")
        self._files = [stdout, stderr]
        argv = [
            *self.command,
            str(self.app),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(self.port_file),
            *self.args,
        ]
        self.process = subprocess.Popen(
            argv, stdout=stdout, stderr=stderr, env={**os.environ, **self.env}, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.port_file.exists():
                text = self.port_file.read_text().strip()
                if text:
                    self.port = int(text)
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        code = self.process.poll()
        self.stop()
        state = f"exited with {code}" if code is not None else f"did not start within {self.startup_timeout:g}s"
        raise RuntimeError(f"modalkit-serve {state}; stderr ({self.stderr_path}):\n{self.stderr()[-4000:]}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send a signal to the server's process group."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for the server to exit; returns its exit code.

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout``.
        """
        if self.process is None:
            raise RuntimeError("the server was not started")
        return self.process.wait(timeout)

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM the group, wait up to ``grace`` seconds (it drains), then SIGKILL. Returns the exit code."""
        process = self.process
        if process is None:
            return None
        try:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(grace)
                except ProcessLookupError:
                    pass
            return process.returncode
        finally:
            for file in self._files:
                file.close()
            self._files = []
            self.port_file.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
