"""`--reload` restarts on a modalkit.yaml edit, not only on .py changes, and its log stays JSON (issue 23 item 3)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from test_service import write_app

CONFIG = """
app_settings:
  app_prefix: reload
model_settings:
  model_entries:
{entries}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _models(url: str) -> list[str] | None:
    try:
        ready = httpx.get(f"{url}/ready", timeout=2)
        if ready.status_code != 200:
            return None
        doc = httpx.get(f"{url}/openapi.json", timeout=2).json()
    except httpx.HTTPError:
        return None
    description = doc["paths"]["/predict_sync"]["post"]["parameters"][0]["description"]
    return sorted(description.rsplit("Known: ", 1)[1].rstrip(".").split(", "))


def _wait_for(url: str, expected: list[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if _models(url) == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server did not serve {expected} in time")


def test_a_config_edit_restarts_the_server_and_the_log_stays_json(tmp_path: Path) -> None:
    app = write_app(tmp_path / "svc")
    config = app.parent / "modalkit.yaml"
    config.write_text(CONFIG.format(entries="    first: {}"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "stderr.log"
    argv = [sys.executable, "-m", "modalkit_serve.cli", str(app), "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*argv, "--reload", "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        _wait_for(url, ["first"], time.monotonic() + 90)
        config.write_text(CONFIG.format(entries="    first: {}\n    second: {}"))
        _wait_for(url, ["first", "second"], time.monotonic() + 90)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not_json == [], not_json
    records = [json.loads(line) for line in lines]
    banners = [r for r in records if "docs_url" in r]
    assert len(banners) >= 2, "each (re)start logs the banner"
    assert banners[-1]["models"] == ["first", "second"]
