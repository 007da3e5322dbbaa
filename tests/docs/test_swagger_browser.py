"""/docs in a real headless Chromium with every host but loopback unreachable: the operations render, and
"Try it out" -> "Execute" sends a request and shows the service's answer.

Skipped where no Chromium is installed (`.ci/run` installs Debian's). Chromium is driven over its DevTools
protocol (a websocket; the `websockets` package comes with uvicorn[standard]), so no browser download or
driver package is needed. The screenshot is kept in the test's temporary folder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from modalkit.testing import ModalkitServer

ROOT = Path(__file__).resolve().parents[2]
SENTIMENT_APP = ROOT / "examples" / "sentiment" / "app.py"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")

# Flags for a root, screenless machine with a closed network (docs of this machine kind); the resolver rule
# makes every host but loopback unresolvable, so a CDN reference would fail to load.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,1600",
    "--remote-debugging-port=0",
]


class Page:
    """One Chromium tab, driven over the DevTools protocol."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.failed_requests: list[str] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("method") == "Network.loadingFailed":
                self.failed_requests.append(message["params"].get("errorText", "?"))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"not true within {timeout}s: {expression}\n{self.js('document.body.innerText')}")


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    from websockets.sync.client import connect

    profile = tmp_path / "profile"
    assert CHROMIUM is not None
    with (tmp_path / "chromium.log").open("wb") as log:
        browser = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert browser.poll() is None, (tmp_path / "chromium.log").read_text()
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        with connect(url, max_size=None, open_timeout=10) as ws:
            tab = Page(ws)
            tab.call("Network.enable")
            yield tab
    finally:
        os.killpg(browser.pid, signal.SIGTERM)
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()


def test_docs_render_and_try_it_out_works_offline(page: Page, tmp_path: Path) -> None:
    with ModalkitServer(SENTIMENT_APP, log_dir=tmp_path, ready_path="/ready") as server:
        page.call("Page.navigate", url=f"{server.url}/docs")
        operations = page.wait_for(
            "Array.from(document.querySelectorAll('.opblock-summary-path')).map(e => e.innerText)"
        )
        assert {"/predict_sync", "/predict_batch", "/predict_async", "/jobs/{job_id}"} <= set(operations)

        shot = page.call("Page.captureScreenshot", format="png")
        png = tmp_path / "docs.png"
        png.write_bytes(base64.b64decode(shot["data"]))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 20_000  # a blank page is a few kB

        block = (
            "Array.from(document.querySelectorAll('.opblock-post'))"
            ".find(b => b.querySelector('.opblock-summary-path').innerText.trim() === '/predict_sync')"
        )
        page.js(f"{block}.querySelector('.opblock-summary-control').click()")
        page.wait_for(f"!!{block}.querySelector('.try-out__btn')")
        page.js(f"{block}.querySelector('.try-out__btn').click()")
        page.wait_for(f"!!{block}.querySelector('.execute')")
        page.js(f"{block}.querySelector('.execute').click()")
        answer = f"{block}.querySelector('.live-responses-table tbody"
        status = page.wait_for(f"({answer} .response-col_status') || {{}}).innerText")
        assert status.strip() == "200"
        body = page.js(f"{answer} .response-col_description pre').innerText")
        assert '"status": "success"' in body
    assert page.failed_requests == []


UPLOAD_APP = ROOT / "packages" / "modalkit" / "tests" / "apps" / "upload_service.py"
UPLOAD_CONFIG = ROOT / "packages" / "modalkit" / "tests" / "fixtures" / "upload.yaml"
# The smallest valid PNG (1x1, one grey pixel): Swagger sends it as the file part of the form.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABc3UBGAAAAABJRU5ErkJggg==")


def test_try_it_out_sends_a_file_on_a_multipart_route(page: Page, tmp_path: Path) -> None:
    photo = tmp_path / "dot.png"
    photo.write_bytes(PNG)
    with ModalkitServer(UPLOAD_APP, config=UPLOAD_CONFIG, log_dir=tmp_path, ready_path="/ready") as server:
        page.call("Page.navigate", url=f"{server.url}/docs")
        block = (
            "Array.from(document.querySelectorAll('.opblock-post'))"
            ".find(b => b.querySelector('.opblock-summary-path').innerText.trim() === '/predict_sync')"
        )
        page.wait_for(f"!!{block}")
        page.js(f"{block}.querySelector('.opblock-summary-control').click()")
        page.wait_for(f"!!{block}.querySelector('.try-out__btn')")
        page.js(f"{block}.querySelector('.try-out__btn').click()")
        # The request body's media type menu offers the form; choosing it renders a file input for `image`.
        select = f"{block}.querySelector('.opblock-section-request-body select')"
        options = page.wait_for(f"{select} && Array.from({select}.options).map(o => o.value)")
        assert "multipart/form-data" in options
        page.js(
            f"(() => {{ const s = {select}; const set = Object.getOwnPropertyDescriptor("
            "HTMLSelectElement.prototype, 'value').set; set.call(s, 'multipart/form-data'); "
            "s.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )
        file_input = f"{block}.querySelector('input[type=file]')"
        page.wait_for(f"!!{file_input}")
        # The file input is the row of the `image` field (the form's other field, `caption`, is a text box).
        row = page.js(f"{file_input}.closest('tr').querySelector('.parameter__name').innerText")
        assert row.split()[0].rstrip("*") == "image"
        found = page.call("Runtime.evaluate", expression=file_input)
        page.call("DOM.setFileInputFiles", files=[str(photo)], objectId=found["result"]["objectId"])
        page.js(f"{block}.querySelector('.execute').click()")
        answer = f"{block}.querySelector('.live-responses-table tbody"
        status = page.wait_for(f"({answer} .response-col_status') || {{}}).innerText")
        body = page.js(f"{answer} .response-col_description pre').innerText")
        assert status.strip() == "200", body
        # The server got the very bytes of the file: its size and digest come back.
        assert json.loads(body)["size"] == len(PNG)
    assert page.failed_requests == []
