"""ServedProcess itself: the working directory, the environment, waiting for readiness, stopping by PID.

The "server" here is a tiny script that speaks the same start-up contract as ``modalkit-serve`` (it binds port 0
on the given host and writes the port to ``--port-file``), so these tests exercise ServedProcess alone, fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from modalkit_serve.testing import ServedProcess, sse_events

FAKE_SERVER = """
import argparse, http.server, json, os, sys

parser = argparse.ArgumentParser()
parser.add_argument("app")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
parser.add_argument("--port-file")
parser.add_argument("--not-ready-times", type=int, default=0)
parser.add_argument("--exit-with", type=int)
args = parser.parse_args()
hits = {"ready": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            hits["ready"] += 1
            status = 503 if hits["ready"] <= args.not_ready_times else 200
            body = {"ready": status == 200}
        else:
            status = 200
            body = {"cwd": os.getcwd(), "app": args.app, "env": dict(os.environ), "ready_hits": hits["ready"]}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


server = http.server.HTTPServer((args.host, args.port), Handler)
with open(args.port_file, "w") as f:
    f.write(str(server.server_address[1]))
if args.exit_with is not None:
    print("giving up before ready", file=sys.stderr, flush=True)
    sys.exit(args.exit_with)
server.serve_forever()
"""


@pytest.fixture
def fake(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    return [sys.executable, str(script)]


def info(server: ServedProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.url}/info", timeout=10) as response:  # noqa: S310 (loopback)
        body: dict[str, Any] = json.loads(response.read())
    return body


def test_it_runs_in_the_given_folder_with_the_given_environment(
    fake: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("SERVED_PROCESS_INHERITED", "yes")
    base = {k: v for k, v in os.environ.items() if k != "SERVED_PROCESS_INHERITED"}
    with ServedProcess(
        "app.py", command=fake, cwd=work, base_env=base, env={"SERVED_PROCESS_EXTRA": "1"}, log_dir=tmp_path
    ) as server:
        seen = info(server)
    assert Path(seen["cwd"]) == work
    assert seen["app"] == "app.py"  # passed as given: relative to the server's folder
    assert seen["env"]["SERVED_PROCESS_EXTRA"] == "1"
    assert "SERVED_PROCESS_INHERITED" not in seen["env"]


def test_the_environment_is_inherited_by_default(
    fake: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVED_PROCESS_INHERITED", "yes")
    with ServedProcess("app.py", command=fake, log_dir=tmp_path) as server:
        seen = info(server)
    assert seen["env"]["SERVED_PROCESS_INHERITED"] == "yes"
    assert Path(seen["cwd"]) == Path.cwd()


def test_start_waits_until_the_ready_path_answers_200(fake: list[str], tmp_path: Path) -> None:
    server = ServedProcess("app.py", ["--not-ready-times", "3"], command=fake, log_dir=tmp_path, ready_path="/ready")
    with server:
        assert info(server)["ready_hits"] == 4  # three 503s, then the 200 that ended start()
    assert server.process is not None
    assert server.process.poll() is not None  # stopped on exit


def test_a_server_that_exits_before_it_is_ready_is_reported_with_its_stderr(fake: list[str], tmp_path: Path) -> None:
    server = ServedProcess("app.py", ["--exit-with", "3"], command=fake, log_dir=tmp_path, ready_path="/ready")
    with pytest.raises(RuntimeError, match=r"(?s)exited with 3.*giving up before ready"):
        server.start()
    assert server.process is not None
    assert server.process.poll() == 3


STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in state  # a zombie waiting for init to reap it has stopped


def test_one_helper_starts_a_process_group_and_stops_all_of_it_by_pid(tmp_path: Path) -> None:
    from modalkit_serve.testing import start_process_group, stop_process_group

    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    pid_file = tmp_path / "child.pid"
    proc = start_process_group([sys.executable, str(script), str(pid_file)])
    assert os.getpgid(proc.pid) == proc.pid  # its own group, led by the PID we hold
    for _ in range(400):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())

    code = stop_process_group(proc, grace=1.0)  # it ignores SIGTERM: SIGKILL after the grace period

    assert code == -signal.SIGKILL
    assert _gone(child)
    assert stop_process_group(proc) == -signal.SIGKILL  # stopping again is harmless


def test_sse_events_reads_each_event_type_and_json_data_as_it_arrives() -> None:
    lines = iter(['data: {"index":0}', "", ": a comment", 'data: {"index":', "data: 1}", "", "event: done", "data: {}"])
    events = sse_events(lines)
    assert next(events) == ("message", {"index": 0})  # yielded before the later lines are read
    assert next(lines) == ": a comment"
    assert list(events) == [("message", {"index": 1}), ("done", {})]  # multi-line data, and a last unterminated event


def test_sse_events_reads_a_whole_body_too() -> None:
    body = 'data: {"a":1}\n\nevent: error\ndata: {"kind":"internal"}\n\n'
    assert list(sse_events(body.split("\n"))) == [("message", {"a": 1}), ("error", {"kind": "internal"})]
