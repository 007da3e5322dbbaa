"""``modalkit serve`` honours a ModalService's ``queue_backend`` as the Modal runtime does (issue 17).

The same app.py delivers async results to the same backend on both runtimes: the class attribute wins over the
backend ``queue_config`` names, an earlier-style backend (``send_message``) is adapted, a class is instantiated.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modalkit import local_app

from .conftest import APPS, FIXTURES


async def _wait_for(condition: Callable[[], bool], what: str) -> None:
    import asyncio

    deadline = time.monotonic() + 10  # a bound on waiting for background delivery, not a speed assertion
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
def config_env(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MODALKIT_CONFIG", raising=False)
    monkeypatch.setenv("MODALKIT_CONFIG", str(FIXTURES / "queue.yaml"))
    return FIXTURES / "queue.yaml"


@pytest.mark.filterwarnings("ignore:.*executing locally and will not have access to the mounted Volume:UserWarning")
@pytest.mark.parametrize(("service", "read"), [("QueueApp", "new"), ("EarlierQueueApp", "earlier")])
async def test_async_results_go_to_the_class_attribute_backend_locally(
    service: str, read: str, config_env: Path
) -> None:
    app = local_app(APPS / "modal_queue_app.py", config=str(config_env), service=service)
    module: Any = sys.modules["modal_queue_app"]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://local") as client,
    ):
        assert await app.state.runner.wait_ready()
        response = await client.post(
            "/predict_async", json={"message": {"text": "cat"}, "success_queue": "done", "meta": {"n": 1}}
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        if read == "new":
            await _wait_for(lambda: bool(module.BACKEND.messages("done")), "the class attribute backend")
            [raw] = module.BACKEND.messages("done")
        else:
            await _wait_for(lambda: bool(module.EARLIER.sent), "the earlier-style backend")
            [(queue, raw)] = module.EARLIER.sent
            assert queue == "done"
    delivered = json.loads(raw)
    assert (delivered["translation"], delivered["meta"], delivered["job_id"]) == ("chat", {"n": 1}, job_id)
