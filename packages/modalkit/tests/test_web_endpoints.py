"""The web app from create_web_endpoints, served through httpx, with Modal's cloud replaced by ``.local()``.

Only `ModalCalls` (the four calls that would reach Modal's servers) is swapped: the class, its enter hook, the
batched method, serve's app and the pipeline are the real ones.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from typing import Any

import httpx
import pytest

from modalkit import ModalCalls, ModalRunner, create_web_endpoints

from .conftest import FIXTURES, LoadApp

KEY = {"x-api-key": "test-key-123"}


class LocalCalls(ModalCalls):
    """Runs the Modal class in this process with ``.local()``; spawned calls run in threads."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.jobs: dict[str, Future[Any]] = {}
        self.gate = threading.Event()
        self.gate.set()

    async def remote(self, method: Any, request: Any) -> Any:
        [result] = await asyncio.to_thread(method.local, [request])
        return result

    async def map(self, method: Any, requests: Any) -> list[Any]:
        # Modal would spread these over containers and batches; in-process, one batch.
        results: list[Any] = await asyncio.to_thread(method.local, list(requests))
        return results

    async def spawn(self, method: Any, request: Any) -> str:
        job_id = f"fc-local{next(self._ids)}"
        future: Future[Any] = Future()

        def run() -> None:
            self.gate.wait()
            try:
                [result] = method.local([request])
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, daemon=True).start()
        self.jobs[job_id] = future
        return job_id

    async def poll(self, job_id: str) -> Any:
        future = self.jobs.get(job_id)
        if future is None:
            raise LookupError(job_id)
        if not future.done():
            raise TimeoutError  # what FunctionCall.get(timeout=0) raises while the call runs
        return future.result()


@pytest.fixture
def calls() -> LocalCalls:
    return LocalCalls()


@pytest.fixture
async def client(load_app: LoadApp, calls: LocalCalls) -> AsyncIterator[httpx.AsyncClient]:
    module = load_app("modal_translation_app.py", FIXTURES / "web.yaml")
    app = create_web_endpoints(module.TranslationApp, module.TextInput, module.TextOutput, calls=calls)
    assert isinstance(app.state.runner, ModalRunner)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://modal.test") as c:
        yield c


async def _until_done(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    for _ in range(1000):
        body: dict[str, Any] = (await client.get(f"/jobs/{job_id}", headers=KEY)).json()
        if body["status"] in ("success", "error"):
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never finished")


async def test_sync_prediction(client: httpx.AsyncClient) -> None:
    r = await client.post("/predict_sync?model_name=translation_model", json={"text": "hello world"}, headers=KEY)
    assert r.status_code == 200
    assert r.json() == {"status": "success", "error": None, "translation": "bonjour monde"}


async def test_sync_prediction_picks_the_model_by_name(client: httpx.AsyncClient) -> None:
    r = await client.post("/predict_sync?model_name=slang_model", json={"text": "good night"}, headers=KEY)
    assert r.json()["translation"] == "bon nuitée"


async def test_sync_pipeline_failure_is_a_500_with_the_error(client: httpx.AsyncClient) -> None:
    r = await client.post("/predict_sync?model_name=translation_model", json={"text": "boom"}, headers=KEY)
    assert r.status_code == 500
    assert "boom is not a word" in r.json()["error"]


async def test_batch_prediction_keeps_order_and_isolates_a_failure(client: httpx.AsyncClient) -> None:
    items = [{"text": "cat"}, {"text": "boom"}, {"text": "good night"}]
    r = await client.post("/predict_batch?model_name=translation_model", json=items, headers=KEY)
    assert r.status_code == 200
    first, failed, last = r.json()
    assert first["translation"] == "chat"
    assert failed["status"] == "error"
    assert "boom" in failed["error"]
    assert last["translation"] == "bon nuit"


async def test_async_job_followed_to_completion(client: httpx.AsyncClient, calls: LocalCalls) -> None:
    calls.gate.clear()  # hold the spawned call: the job is visibly running
    r = await client.post(
        "/predict_async?model_name=translation_model",
        json={"message": {"text": "hello"}, "success_queue": "", "meta": {"n": 1}},
        headers=KEY,
    )
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    assert job_id in calls.jobs  # the job id is the (Modal) FunctionCall id
    pending = (await client.get(f"/jobs/{job_id}", headers=KEY)).json()
    assert pending == {"job_id": job_id, "status": "running", "result": None}
    calls.gate.set()
    done = await _until_done(client, job_id)
    assert done["status"] == "success"
    assert done["result"]["translation"] == "bonjour"


async def test_async_job_whose_item_failed_reports_error(client: httpx.AsyncClient) -> None:
    body = {"message": {"text": "boom"}}
    r = await client.post("/predict_async?model_name=translation_model", json=body, headers=KEY)
    done = await _until_done(client, r.json()["job_id"])
    assert done["status"] == "error"
    assert "boom" in done["result"]["error"]


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/jobs/fc-nothing", headers=KEY)
    assert r.status_code == 404


async def test_unknown_model_is_404_before_any_modal_call(client: httpx.AsyncClient, calls: LocalCalls) -> None:
    r = await client.post("/predict_sync?model_name=nope", json={"text": "hello"}, headers=KEY)
    assert r.status_code == 404
    assert calls.jobs == {}


async def test_bad_input_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/predict_sync?model_name=translation_model", json={"txt": "hello"}, headers=KEY)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "text"]


async def test_api_key_is_required(client: httpx.AsyncClient) -> None:
    r = await client.post("/predict_sync?model_name=translation_model", json={"text": "hello"})
    assert r.status_code == 401
    assert (await client.get("/health")).status_code == 200


async def test_modal_proxy_auth_is_left_to_modal(client: httpx.AsyncClient) -> None:
    # secure: true -> Modal's proxy checks Modal-Key/Modal-Secret before the request reaches the container,
    # so the app itself does not ask for them (locally, `modalkit serve` does).
    r = await client.post("/predict_sync?model_name=translation_model", json={"text": "cat"}, headers=KEY)
    assert r.status_code == 200


class _FailingCalls(LocalCalls):
    async def remote(self, method: Any, request: Any) -> Any:
        raise ConnectionError("modal unreachable")


async def test_a_failed_modal_call_is_a_json_error_not_a_stack_trace(load_app: LoadApp) -> None:
    module = load_app("modal_translation_app.py", FIXTURES / "web.yaml")
    app = create_web_endpoints(module.TranslationApp, module.TextInput, module.TextOutput, calls=_FailingCalls())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modal.test") as c:
        r = await c.post("/predict_sync?model_name=translation_model", json={"text": "cat"}, headers=KEY)
    assert r.status_code == 500
    assert r.json()["error"] == "the Modal call failed: ConnectionError: modal unreachable"


class _SilentCalls(LocalCalls):
    async def remote(self, method: Any, request: Any) -> Any:
        await asyncio.Event().wait()  # Modal never answers


async def test_no_answer_within_the_request_timeout_is_504(load_app: LoadApp, tmp_path: Any) -> None:
    config = tmp_path / "modalkit.yaml"
    config.write_text(
        "app_settings:\n  app_prefix: slow\n  server_config: {request_timeout_seconds: 0.05}\n"
        "model_settings: {model_entries: {translation_model: {}}}\n"
    )
    module = load_app("modal_translation_app.py", config)
    app = create_web_endpoints(module.TranslationApp, module.TextInput, module.TextOutput, calls=_SilentCalls())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modal.test") as c:
        r = await c.post("/predict_sync", json={"text": "cat"})
    assert r.status_code == 504
    assert "request_timeout_seconds" in r.json()["detail"]
