"""Run a service as a real server process in tests: ``modalkit-serve APP.py`` on a free loopback port.

Example::

    from modalkit_serve.testing import ServedProcess

    def test_my_service(tmp_path):
        with ServedProcess("app.py", log_dir=tmp_path) as server:
            response = httpx.post(f"{server.url}/predict_sync", json={"text": "hi"})
            assert response.status_code == 200

The process runs in its own session (process group), binds 127.0.0.1 on a port the OS picks, and is stopped by
signalling its group (SIGTERM, then SIGKILL after a grace period). Its stderr (the JSON log) goes to a file
whose path the object exposes, for debugging a failed test. With ``ready_path="/ready"``, ``start()`` also waits
until the service answers 200 there (its models are loaded).

``modalkit.testing`` builds on this to run the ``modalkit serve`` command.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = ["ServedProcess", "sse_events", "start_process_group", "stop_process_group"]


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(event type, decoded JSON data) of each Server-Sent Event, yielded as soon as its blank line is read.

    ``lines`` is ``response.iter_lines()`` of a streaming httpx response (events as they arrive) or
    ``body.split("\\n")``. The type is ``message`` when the event names none; comment lines are skipped.
    """
    kind, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)
    if data:
        yield kind, json.loads("\n".join(data))


def start_process_group(argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group (its PID is the group id), for `stop_process_group`.

    ``popen`` goes to `subprocess.Popen` (``stdout``, ``env``, ``cwd``, ...).
    """
    return subprocess.Popen(list(argv), start_new_session=True, **popen)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 30.0) -> int | None:
    """Stop the group `start_process_group` started, by its leader's PID; returns the leader's exit code.

    SIGTERM the group, wait up to ``grace`` seconds for the leader (a server drains), then SIGKILL the group;
    helpers the leader forked and left behind get SIGKILL too. Harmless on a group already stopped.
    """
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(grace)
        except ProcessLookupError:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever the leader left in its group
    return process.returncode


class ServedProcess:
    """A ``modalkit-serve`` server process.

    Args:
        app: The app file.
        args: More CLI arguments (``--config``, ``--log-level``, ...).
        log_dir: Where the server's stdout/stderr and port file go (default: the current directory).
        env: Extra environment variables for the server, laid over ``base_env``.
        base_env: The environment the server starts from (default: this process's environment).
        cwd: The server's working directory (default: this process's); a relative ``app`` is relative to it.
        command: The command to start instead of ``python -m modalkit_serve.cli`` (e.g. the ``modalkit serve``
            CLI); ``APP --host 127.0.0.1 --port 0 --port-file FILE`` and ``args`` are appended.
        startup_timeout: Seconds to wait for the server to accept connections (and to be ready).
        ready_path: If set, ``start()`` also waits until ``GET ready_path`` answers 200.
    """

    def __init__(
        self,
        app: str | os.PathLike[str],
        args: Sequence[str] = (),
        *,
        log_dir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        command: Sequence[str] | None = None,
        startup_timeout: float = 60.0,
        ready_path: str | None = None,
    ) -> None:
        self.app = Path(app)
        self.args = list(args)
        self.log_dir = Path(log_dir) if log_dir is not None else Path.cwd()
        self.env = dict(env or {})
        self.base_env = dict(base_env) if base_env is not None else None
        self.cwd = Path(cwd) if cwd is not None else None
        self.command = list(command) if command is not None else [sys.executable, "-m", "modalkit_serve.cli"]
        self.startup_timeout = startup_timeout
        self.ready_path = ready_path
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
        """Start the server and wait until it accepts connections (and, with ``ready_path``, is ready).

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
        base = os.environ if self.base_env is None else self.base_env
        self.process = start_process_group(argv, stdout=stdout, stderr=stderr, env={**base, **self.env}, cwd=self.cwd)
        deadline = time.monotonic() + self.startup_timeout
        if self._wait_for_port(deadline) and (self.ready_path is None or self._wait_until_ready(deadline)):
            return self
        code = self.process.poll()
        self.stop()
        if code is not None:
            state = f"exited with {code}"
        elif self.port:
            state = f"was not ready ({self.ready_path}) within {self.startup_timeout:g}s"
        else:
            state = f"did not start within {self.startup_timeout:g}s"
        raise RuntimeError(f"{self._name()} {state}; stderr ({self.stderr_path}):\n{self.stderr()[-4000:]}")

    def _name(self) -> str:
        # The command as a user would type it: `modalkit serve`, `modalkit_serve.cli`, or the program's name.
        words = self.command[2:] if self.command[1:2] == ["-m"] else self.command[:1]
        return " ".join(words) or "the server"

    def _wait_for_port(self, deadline: float) -> bool:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.port_file.exists():
                text = self.port_file.read_text().strip()
                if text:
                    self.port = int(text)
                    return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def _wait_until_ready(self, deadline: float) -> bool:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=5) as response:  # noqa: S310 (loopback)
                    if response.status == 200:
                        return True
            except urllib.error.HTTPError as exc:
                exc.close()  # 503 while the models load
            except OSError:
                pass  # not accepting connections yet
            time.sleep(0.05)
        return False

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
            return stop_process_group(process, grace)
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
