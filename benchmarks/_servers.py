"""Server processes for the benchmarks: loopback only, free ports, own process group, stopped by PID."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modalkit_serve.testing import start_process_group, stop_process_group

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
LITSERVE_VENV = BENCH_DIR / ".venv-litserve"
LITSERVE_REQUIREMENTS = ("litserve==0.2.19", "fastapi", "uvicorn[standard]")


class ServerError(RuntimeError):
    """A benchmarked server did not start, answered wrongly, or did not drain."""


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Probe:
    """One request sent outside wrk: its status, body and how long it took."""

    status: int
    body: bytes
    seconds: float


class ServerProcess:
    """One server under test, started as a real process in its own process group.

    Args:
        name: Label in the results table.
        argv: The command; ``{port}`` in any argument is replaced by the chosen port.
        log_path: Where the server's stdout and stderr go (read back when it fails to start).
        env: Extra environment variables.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # A new session makes the server the leader of its own process group (pgid == pid), so stop()
            # reaches the helper processes some servers fork (LitServe's inference workers) and nothing else.
            self._proc = start_process_group(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=BENCH_DIR
            )

    def wait_ready(self, path: str, timeout_s: float = 90) -> None:
        """Poll ``GET path`` until it answers 200.

        Raises:
            ServerError: the process exited or did not get ready in time (with the end of its log).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise ServerError(f"{self.name} exited during start-up:\n{self.log_tail()}")
            try:
                if self.request("GET", path, timeout_s=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise ServerError(f"{self.name} was not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def request(self, method: str, path: str, body: str | None = None, timeout_s: float = 60) -> Probe:
        """Send one request on a fresh connection and time it."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout_s)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            start = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return Probe(resp.status, data, time.perf_counter() - start)
        finally:
            conn.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 15) -> None:
        """SIGTERM the server's process group (its id is the PID we started), then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc, grace_s)  # helpers left in the group (a forked worker) go too


def drain(
    server: ServerProcess,
    path: str,
    body: str,
    idle_s: float,
    probe_ok: Callable[[Probe], bool],
    timeout_s: float = 120,
) -> float:
    """Wait until requests wrk left in flight have been served; return how long that took.

    wrk stops with up to one request per connection still queued in the server. Each probe waits behind
    them, so once two probes in a row are about as fast as on an idle server, the backlog is gone.

    Raises:
        ServerError: a probe got a wrong answer, or the server was still busy after ``timeout_s``.
    """
    start = time.monotonic()
    fast_in_a_row = 0
    while fast_in_a_row < 2:
        if time.monotonic() - start > timeout_s:
            raise ServerError(f"{server.name} still had a backlog after {timeout_s:.0f}s")
        probe = server.request("POST", path, body)
        if not probe_ok(probe):
            raise ServerError(f"{server.name} answered a probe with {probe.status}: {probe.body[:300]!r}")
        fast_in_a_row = fast_in_a_row + 1 if probe.seconds <= max(2 * idle_s, idle_s + 0.003) else 0
        time.sleep(0.05)
    return time.monotonic() - start


def idle_latency(server: ServerProcess, path: str, body: str, probe_ok: Callable[[Probe], bool]) -> float:
    """Median latency of a few probes on an idle server; also checks its answers are right.

    Raises:
        ServerError: the server answered a probe wrongly.
    """
    times = []
    for _ in range(7):
        probe = server.request("POST", path, body)
        if not probe_ok(probe):
            raise ServerError(f"{server.name} answered {probe.status}: {probe.body[:300]!r}")
        times.append(probe.seconds)
    return sorted(times[2:])[len(times[2:]) // 2]


def venv_python(
    venv: Path, requirements: tuple[str, ...], check: str, log: Callable[[str], None], label: str
) -> Path | None:
    """The Python of a venv with ``requirements``, built on first use and then reused; None if it can't be built.

    ``check`` is Python code run in the venv; exit status 0 means the venv is complete (otherwise it is rebuilt).
    """
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", check], capture_output=True, check=False).returncode == 0:
        return python
    log(f"creating {venv.relative_to(BENCH_DIR.parent)} with {', '.join(requirements)} (once)")
    steps = [
        ["uv", "venv", "--quiet", "--python", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv)],
        ["uv", "pip", "install", "--quiet", "--python", str(python), *requirements],
    ]
    return python if setup_steps(steps, log, label) else None


def setup_steps(steps: list[list[str]], log: Callable[[str], None], label: str, cwd: Path | None = None) -> bool:
    """Run the commands that build a venv, in order; False (and a log line saying why) if one fails."""
    for step in steps:
        try:
            proc = subprocess.run(step, capture_output=True, text=True, check=False, timeout=600, cwd=cwd)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log(f"could not build the {label} venv ({exc}); {label} is left out of this run")
            return False
        if proc.returncode != 0:
            log(f"could not build the {label} venv: {proc.stderr.strip()[-500:]}; {label} is left out of this run")
            return False
    return True


def litserve_python(log: Callable[[str], None]) -> Path | None:
    """The Python of a venv with LitServe 0.2.19, created on first use and then reused; None if it can't be built."""
    check = "import litserve, sys; sys.exit(litserve.__version__ != '0.2.19')"
    return venv_python(LITSERVE_VENV, LITSERVE_REQUIREMENTS, check, log, "LitServe")
