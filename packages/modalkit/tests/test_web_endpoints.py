"""The web app from create_web_endpoints, served through httpx, with Modal's cloud replaced by ``.local()``.

Only `ModalCalls` (the four calls that would reach Modal's servers) is swapped: the class, its enter hook, the
batched method, serve's app and the pipeline are the real ones.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from types import ModuleType
from typing import Any, cast

import httpx
import modal
import pytest
from modal._serialization import deserialize, serialize  # what Modal does to every input
from pytest_mock import MockerFixture

from modalkit import MemoryJobIndex, ModalCalls, ModalDictJobIndex, ModalRunner, create_web_endpoints, job_index_name
from modalkit._jobs import read_index_entry
from modalkit_auth import Authenticator
from modalkit_pipeline import AsyncInputModel
from modalkit_serve import RequestInfo

from .conftest import FIXTURES, LoadApp

KEY = {"x-api-key": "test-key-123"}


def _owner(key: str) -> str | None:
    """The identity the app ties a job to when it is created with ``key``."""
    return Authenticator(keys=[key]).identity([(b"x-api-key", key.encode())])


class CountingIndex(MemoryJobIndex):
    """The in-memory job index, counting lookups (a malformed id must not reach it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[str] = []

    async def get(self, job_id: str) -> str | None:
        self.lookups.append(job_id)
        return await super().get(job_id)


class LocalCalls(ModalCalls):
    """Modal's cloud, in this process: the class runs through ``.local()``.

    A spawned request goes through Modal's own serializer (as its input would), then runs in a thread as a batch
    of one; with ``hold`` set, spawned requests wait until `run_held` runs them all as ONE batch, as Modal does
    when several inputs reach a ``@modal.batched`` method together. `retry` runs a call's input again, as Modal
    does when an input is retried.
    """

    def __init__(self) -> None:
        super().__init__(job_index=CountingIndex())
        self.index = cast("CountingIndex", self.job_index)
        self._ids = itertools.count(1)
        self.futures: dict[str, Future[Any]] = {}
        self.inputs: dict[str, tuple[Any, bytes]] = {}
        self.hold = False
        self.held: list[str] = []
        self.batch_sizes: list[int] = []
        self.cancelled: list[str] = []

    async def remote(self, method: Any, request: Any) -> Any:
        [result] = await asyncio.to_thread(method.local, [request])
        return result

    async def map(self, method: Any, requests: Any) -> list[Any]:
        # Modal would spread these over containers and batches; in-process, one batch.
        results: list[Any] = await asyncio.to_thread(method.local, list(requests))
        return results

    async def spawn(self, method: Any, request: Any) -> str:
        call_id = f"fc-local{next(self._ids)}"
        self.inputs[call_id] = (method, serialize(request))
        self.futures[call_id] = Future()
        if self.hold:
            self.held.append(call_id)
        else:
            threading.Thread(target=self._run, args=([call_id],), daemon=True).start()
        return call_id

    async def run_held(self) -> None:
        """Run every held call as one batch."""
        held, self.held = self.held, []
        await asyncio.to_thread(self._run, held)

    async def retry(self, call_id: str) -> None:
        """Run a call's input again (the same serialized bytes), as Modal does on a retry."""
        self.futures[call_id] = Future()
        await asyncio.to_thread(self._run, [call_id])

    def _run(self, call_ids: list[str]) -> None:
        method = self.inputs[call_ids[0]][0]
        requests = [deserialize(self.inputs[c][1], None) for c in call_ids]
        self.batch_sizes.append(len(requests))
        try:
            results = method.local(requests)
        except BaseException as exc:
            for c in call_ids:
                self.futures[c].set_exception(exc)
        else:
            for c, result in zip(call_ids, results, strict=True):
                self.futures[c].set_result(result)

    async def poll(self, call_id: str) -> Any:
        future = self.futures.get(call_id)
        if future is None:
            raise LookupError(call_id)
        if not future.done():
            raise TimeoutError  # what FunctionCall.get(timeout=0) raises while the call runs
        return future.result()

    async def cancel(self, call_id: str) -> None:
        self.cancelled.append(call_id)


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
    error = "ValueError: boom is not a word"
    assert r.json() == {"detail": error, "status": "error", "error": error}


async def test_sync_input_the_pipeline_refused_is_a_422_with_its_message(client: httpx.AsyncClient) -> None:
    # The ItemError comes back from the container (.remote) and keeps its kind on the way.
    r = await client.post("/predict_sync?model_name=translation_model", json={"text": "  "}, headers=KEY)
    assert r.status_code == 422
    assert r.json() == {"detail": [{"type": "item_error", "loc": ["body"], "msg": "nothing to translate"}]}


async def test_batch_prediction_keeps_order_and_isolates_a_failure(client: httpx.AsyncClient) -> None:
    items = [{"text": "cat"}, {"text": "boom"}, {"text": "good night"}, {"text": " "}]
    r = await client.post("/predict_batch?model_name=translation_model", json=items, headers=KEY)
    assert r.status_code == 200
    first, failed, last, refused = r.json()
    assert first["translation"] == "chat"
    assert failed["status"] == "error"
    assert "boom" in failed["error"]
    assert failed["kind"] == "internal"
    assert last["translation"] == "bon nuit"
    assert (refused["status"], refused["error"], refused["kind"]) == ("error", "nothing to translate", "input")


async def _post_async(client: httpx.AsyncClient, text: str, **fields: Any) -> str:
    r = await client.post(
        "/predict_async?model_name=translation_model", json={"message": {"text": text}, **fields}, headers=KEY
    )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def test_async_job_followed_to_completion(client: httpx.AsyncClient, calls: LocalCalls) -> None:
    calls.hold = True  # the spawned call waits: the job is visibly running
    job_id = await _post_async(client, "hello", meta={"n": 1})
    pending = (await client.get(f"/jobs/{job_id}", headers=KEY)).json()
    assert pending == {"job_id": job_id, "status": "running", "result": None}
    await calls.run_held()
    done = await _until_done(client, job_id)
    assert done["status"] == "success"
    assert done["result"]["translation"] == "bonjour"


async def test_the_job_id_is_made_by_the_web_side_and_indexed_before_the_202(
    client: httpx.AsyncClient, calls: LocalCalls
) -> None:
    calls.hold = True
    job_id = await _post_async(client, "hello")
    [call_id] = calls.held
    assert job_id != call_id
    assert len(job_id) >= 22  # modalkit_auth.new_job_id: 192 random bits, URL-safe
    entry = await calls.index.get(job_id)
    assert entry is not None
    assert read_index_entry(entry) == (call_id, _owner(KEY["x-api-key"]))  # tied to the key that made it
    [(_, payload)] = calls.inputs.values()
    assert deserialize(payload, None).job_id == job_id  # the id travels inside the spawned input


async def test_async_job_whose_item_failed_reports_error(client: httpx.AsyncClient) -> None:
    job_id = await _post_async(client, "boom")
    done = await _until_done(client, job_id)
    assert done["status"] == "error"
    assert "boom" in done["result"]["error"]
    assert done["result"]["kind"] == "internal"


async def test_async_job_whose_input_was_refused_reports_an_input_error(client: httpx.AsyncClient) -> None:
    job_id = await _post_async(client, "")
    done = await _until_done(client, job_id)
    assert done["status"] == "error"
    assert (done["result"]["error"], done["result"]["kind"]) == ("nothing to translate", "input")


async def test_unknown_job_is_404(client: httpx.AsyncClient, calls: LocalCalls) -> None:
    r = await client.get("/jobs/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", headers=KEY)
    assert r.status_code == 404
    assert calls.index.lookups == ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]


@pytest.mark.parametrize("bad", ["x" * 129, "..%2F..%2Fetc%2Fpasswd", "..", "a.b", "%00", "fc%20x", "%C3%A9"])
async def test_a_malformed_job_id_never_reaches_the_index(
    client: httpx.AsyncClient, calls: LocalCalls, bad: str
) -> None:
    r = await client.get(f"/jobs/{bad}", headers=KEY)
    assert r.status_code in (404, 422)
    assert calls.index.lookups == []


async def test_the_runner_itself_refuses_a_malformed_job_id(load_app: LoadApp) -> None:
    module = load_app("modal_translation_app.py", FIXTURES / "web.yaml")
    calls = LocalCalls()
    runner = ModalRunner(module.TranslationApp, module.TextOutput, calls=calls)
    assert await runner.job_status("../../etc/passwd") is None
    assert await runner.job_status("x" * 129) is None
    assert calls.index.lookups == []


async def test_a_job_is_unknown_to_every_caller_but_its_owner(load_app: LoadApp) -> None:
    module = load_app("modal_translation_app.py", FIXTURES / "web.yaml")
    calls = LocalCalls()
    runner = ModalRunner(module.TranslationApp, module.TextOutput, calls=calls)

    def caller(owner: str | None) -> RequestInfo:
        info = RequestInfo("request")
        info.owner = owner
        return info

    request: Any = AsyncInputModel[module.TextInput](message=module.TextInput(text="hello"))  # type: ignore[name-defined]
    job_id = await runner.submit_async("translation_model", request, caller("key:owner-a"))

    assert await runner.job_status(job_id, caller("key:owner-a")) is not None
    assert await runner.job_status(job_id, caller("key:owner-b")) is None
    assert await runner.job_status(job_id, caller(None)) is None
    assert await runner.job_status(job_id) is None


class _BrokenIndex(MemoryJobIndex):
    async def put(self, job_id: str, call_id: str) -> None:
        raise ConnectionError("modal.Dict unreachable")


async def test_an_unrecorded_job_is_a_503_and_its_call_is_cancelled(load_app: LoadApp) -> None:
    module = load_app("modal_translation_app.py", FIXTURES / "web.yaml")
    calls = LocalCalls()
    calls.job_index = _BrokenIndex()
    calls.hold = True
    app = create_web_endpoints(module.TranslationApp, module.TextInput, module.TextOutput, calls=calls)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modal.test") as c:
        r = await c.post("/predict_async?model_name=translation_model", json={"message": {"text": "cat"}}, headers=KEY)
    assert r.status_code == 503
    assert "job index" in r.json()["detail"]
    assert calls.cancelled == calls.held  # the client never got its id: the call must not run unseen


# --- queued results carry exactly the job id the client got --------------------------------------------------


@pytest.fixture
def jobs_app(load_app: LoadApp) -> ModuleType:
    return load_app("modal_jobs_app.py", FIXTURES / "web.yaml")  # max_batch_size: 8


@pytest.fixture
async def jobs_client(jobs_app: ModuleType, calls: LocalCalls) -> AsyncIterator[httpx.AsyncClient]:
    app = create_web_endpoints(jobs_app.JobsApp, jobs_app.TextInput, jobs_app.TextOutput, calls=calls)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modal.test") as c:
        yield c


async def _delivered(backend: Any, queue: str, count: int) -> list[dict[str, Any]]:
    # A bound on waiting for the background sender, not a speed assertion.
    for _ in range(1000):
        messages = backend.messages(queue)
        if len(messages) >= count:
            return [json.loads(m) for m in messages]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} message(s) never reached {queue!r}")


async def test_async_jobs_in_one_batch_each_deliver_the_job_id_their_client_got(
    jobs_app: ModuleType, jobs_client: httpx.AsyncClient, calls: LocalCalls
) -> None:
    calls.hold = True
    texts = ["cat", "hello world", "good night", "boom"]
    queues = {"success_queue": "done", "failure_queue": "failed"}
    ids = [await _post_async(jobs_client, text, meta={"n": n}, **queues) for n, text in enumerate(texts)]
    assert len(set(ids)) == len(ids)
    await calls.run_held()
    assert calls.batch_sizes == [4]  # one batch of four inputs, as Modal would run them together

    messages = await _delivered(jobs_app.BACKEND, "done", 3) + await _delivered(jobs_app.BACKEND, "failed", 1)
    assert {m["meta"]["n"]: m["job_id"] for m in messages} == dict(enumerate(ids))
    assert all(m["meta"] == {"n": m["meta"]["n"]} for m in messages)  # meta is the client's, untouched
    [failed] = [m for m in messages if m["status"] == "error"]
    assert failed["original_message"] == {"message": {"text": "boom"}, "meta": {"n": 3}, **queues}

    views = [await _until_done(jobs_client, job_id) for job_id in ids]
    assert [v["job_id"] for v in views] == ids
    assert [v["status"] for v in views] == ["success", "success", "success", "error"]
    assert [v["result"].get("translation") for v in views[:3]] == ["chat", "bonjour monde", "bon nuit"]


async def test_a_retried_input_delivers_the_same_job_id_again(
    jobs_app: ModuleType, jobs_client: httpx.AsyncClient, calls: LocalCalls
) -> None:
    calls.hold = True
    job_id = await _post_async(jobs_client, "cat", success_queue="done")
    other = await _post_async(jobs_client, "hello", success_queue="done")
    await calls.run_held()
    first = await _delivered(jobs_app.BACKEND, "done", 2)
    await calls.retry(read_index_entry(await calls.index.get(job_id) or "")[0])  # Modal runs the same input again
    both = await _delivered(jobs_app.BACKEND, "done", 3)
    assert sorted(m["job_id"] for m in first) == sorted([job_id, other])
    retried = [m for m in both if m["job_id"] == job_id]
    assert len(retried) == 2  # the consumer sees a duplicate it can drop by job_id
    assert retried[0] == retried[1]


# --- the real job index: a modal.Dict, built lazily -----------------------------------------------------------


def test_the_job_index_is_a_modal_dict_named_after_the_app_and_built_on_first_use(
    load_app: LoadApp, mocker: MockerFixture
) -> None:
    from_name = mocker.spy(modal.Dict, "from_name")  # the real from_name runs; the spy records the calls
    module = load_app("modal_translation_app.py", FIXTURES / "web.yaml")
    app = create_web_endpoints(module.TranslationApp, module.TextInput, module.TextOutput)
    index = app.state.runner.job_index
    assert isinstance(index, ModalDictJobIndex)
    assert index.name == "web-dev-jobs"
    from_name.assert_not_called()  # nothing at start-up: the Dict handle is made on the first async request
    handle = index.modal_dict
    from_name.assert_called_once_with("web-dev-jobs", create_if_missing=True)
    assert isinstance(handle, modal.Dict)
    assert repr(handle) == "modal.Dict.from_name('web-dev-jobs')"
    assert not handle._is_hydrated  # no network yet: Modal looks the Dict up (or creates it) on first use
    assert index.modal_dict is handle


def test_the_job_index_name_is_a_valid_modal_name_even_for_a_long_app_name() -> None:
    assert job_index_name("web-dev") == "web-dev-jobs"
    long_a, long_b = "a" * 60 + "-prod", "a" * 60 + "-test"
    names = {job_index_name(long_a), job_index_name(long_b)}
    assert len(names) == 2
    for name in names:
        assert len(name) <= 64
        assert name.endswith("-jobs")
        modal.Dict.from_name(name, create_if_missing=True)  # checks the name (offline), raises if invalid


async def test_unknown_model_is_404_before_any_modal_call(client: httpx.AsyncClient, calls: LocalCalls) -> None:
    r = await client.post("/predict_sync?model_name=nope", json={"text": "hello"}, headers=KEY)
    assert r.status_code == 404
    assert calls.futures == {}


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
    assert r.json()["error"] == "the Modal call failed (ConnectionError); the server log has the details"


class _LoadFailedCalls(LocalCalls):
    async def remote(self, method: Any, request: Any) -> Any:
        raise FileNotFoundError("[Errno 2] No such file or directory: '/root/models/translation/weights.bin'")


async def test_a_failed_modal_call_shows_callers_no_server_path(
    load_app: LoadApp, caplog: pytest.LogCaptureFixture
) -> None:
    # A model that fails in @modal.enter fails every call with the container's own message, paths and all.
    module = load_app("modal_translation_app.py", FIXTURES / "web.yaml")
    app = create_web_endpoints(module.TranslationApp, module.TextInput, module.TextOutput, calls=_LoadFailedCalls())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modal.test") as c:
        r = await c.post("/predict_sync?model_name=translation_model", json={"text": "cat"}, headers=KEY)
    assert r.status_code == 500
    assert "/root" not in r.text
    assert "weights.bin" not in r.text
    assert "weights.bin" in caplog.text  # the operator still sees why


class _OddCalls(LocalCalls):
    async def remote(self, method: Any, request: Any) -> Any:
        return 42  # neither a model nor a dict: not something the container sends

    async def map(self, method: Any, requests: Any) -> list[Any]:
        return [RuntimeError("container lost"), {"status": "error", "error": "x", "kind": "input"}]


async def test_failures_of_the_modal_call_itself_are_internal(load_app: LoadApp) -> None:
    module = load_app("modal_translation_app.py", FIXTURES / "web.yaml")
    runner = ModalRunner(module.TranslationApp, module.TextOutput, calls=_OddCalls())
    odd = await runner.predict("translation_model", module.TextInput(text="cat"))
    lost, refused = await runner.predict_many("translation_model", [module.TextInput(text=t) for t in "ab"])
    failing = ModalRunner(module.TranslationApp, module.TextOutput, calls=_FailingCalls())
    unreachable = await failing.predict("translation_model", module.TextInput(text="cat"))

    assert [(type(r).__name__, getattr(r, "kind", None)) for r in (odd, lost, unreachable)] == [
        ("ItemError", "internal")
    ] * 3
    assert getattr(refused, "kind", None) == "input"  # a result dict keeps the kind the container gave it


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
