"""``ModalService`` as the earlier README and docs wrote it: injected queue backends, ``async_call``/``sync_call``,
``send_async_response``, ``create_web_endpoints`` given an instance. The real ``modal`` package, offline."""

# No ``from __future__ import annotations``: Modal evaluates the annotations of the classes defined in the tests.

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import httpx
import modal
import modal.exception
import pytest
from fastapi import HTTPException
from pydantic import BaseModel

from modalkit import MemoryJobIndex, ModalCalls
from modalkit.inference_pipeline import InferencePipeline
from modalkit.iomodel import AsyncInputModel, AsyncOutputModel, InferenceOutputModel, SyncInputModel
from modalkit.modal_config import ModalConfig
from modalkit.modal_service import ModalService, create_web_endpoints
from modalkit_config import settings_from_dict


class TextRequest(BaseModel):
    text: str


class TextResponse(InferenceOutputModel):
    result: str


class SimplePipeline(InferencePipeline):  # type: ignore[type-arg]  # the earlier docs did not parameterise it
    def preprocess(self, input_list: list[Any]) -> dict[str, Any]:
        return {"texts": [item.text for item in input_list]}

    def predict(self, input_list: list[Any], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {"out": [text.upper() for text in preprocessed_data["texts"]]}

    def postprocess(self, input_list: list[Any], raw_output: dict[str, Any]) -> list[Any]:
        return [
            TextResponse(result=t) if t != "BOOM" else self.item_error("cannot say boom") for t in raw_output["out"]
        ]


class TypedPipeline(SimplePipeline, InferencePipeline[TextRequest, TextResponse]):
    pass


config = ModalConfig(
    settings_from_dict(
        {"app_settings": {"app_prefix": "compat"}, "model_settings": {"model_entries": {"text-processor": {}}}}
    ),
    config_files=[],
)


class RecordingQueue:
    """An earlier-style custom queue (``send_message -> bool``), as the earlier README showed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send_message(self, queue_name: str, message: str) -> bool:
        self.sent.append((queue_name, json.loads(message)))
        return True


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10  # a bound on background delivery, not a speed assertion
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


# --- the constructor argument ---------------------------------------------------------------------------------


def test_readme_no_queue_service_constructs_without_arguments() -> None:
    class MyService(ModalService):
        inference_implementation = SimplePipeline

    service = MyService()
    assert service.queue_backend is None


def test_readme_injection_by_constructor_argument() -> None:
    class MyService(ModalService):
        inference_implementation = SimplePipeline

    backend = RecordingQueue()
    service = MyService(queue_backend=backend)
    assert service.queue_backend is backend
    assert MyService().queue_backend is None  # the argument is per instance, not per class


def test_constructor_refuses_arguments_it_does_not_know() -> None:
    class MyService(ModalService):
        inference_implementation = SimplePipeline

    with pytest.raises(TypeError, match="queue_backend"):
        MyService(queue_backnd=RecordingQueue())


def test_docs_init_pattern_outside_modal_serves_and_delivers_through_the_injected_backend() -> None:
    class TextProcessingService(ModalService):
        inference_implementation = SimplePipeline
        modal_utils = config

        def __init__(self, queue_backend: Any = None) -> None:
            super().__init__(queue_backend=queue_backend)
            self.model_name = "text-processor"

    backend = RecordingQueue()
    service: Any = TextProcessingService(queue_backend=backend)  # Any: modal types the decorated methods
    assert service.queue_backend is backend
    service.load_artefacts()
    results = service.process_request(
        [
            SyncInputModel(message=TextRequest(text="sync")),
            AsyncInputModel(
                message=TextRequest(text="async"), success_queue="done", failure_queue="failed", meta={"user": 7}
            ),
        ]
    )
    service.drain()
    assert [r.result for r in results] == ["SYNC", "ASYNC"]
    assert results[1].meta == {"user": 7}  # the async output carries its request's meta, as before
    [(queue, message)] = backend.sent
    assert queue == "done"
    assert (message["result"], message["meta"]) == ("ASYNC", {"user": 7})


def test_init_on_an_app_cls_class_is_refused_by_modal_naming_the_replacement() -> None:
    app = modal.App("compat-init")

    class TextProcessingApp(ModalService):
        inference_implementation = TypedPipeline
        modal_utils = config
        model_name: str = modal.parameter(default="text-processor")

        def __init__(self, queue_backend: Any = None) -> None:
            super().__init__(queue_backend=queue_backend)

    with pytest.raises(modal.exception.InvalidError, match=r"__init__[\s\S]*@modal\.enter"):
        app.cls(serialized=True)(TextProcessingApp)


def test_the_replacement_on_app_cls_is_a_queue_backend_class_attribute() -> None:
    app = modal.App("compat-attr")
    backend = RecordingQueue()

    @app.cls(serialized=True)
    class TextProcessingApp(ModalService):
        inference_implementation = TypedPipeline
        modal_utils = config
        model_name: str = modal.parameter(default="text-processor")
        queue_backend = backend

    request = AsyncInputModel[TextRequest](message=TextRequest(text="hi"), success_queue="done", meta={"k": 1})
    service: Any = TextProcessingApp(model_name="text-processor")
    [result] = service.process_request.local([request])
    assert result.meta == {"k": 1}
    _wait_for(lambda: len(backend.sent) == 1, "the result on the injected backend")
    assert backend.sent[0][0] == "done"


# --- send_async_response ---------------------------------------------------------------------------------------


def _loaded(backend: Any) -> Any:
    class Service(ModalService):
        inference_implementation = TypedPipeline
        modal_utils = config
        model_name: str = "text-processor"

    service: Any = Service(queue_backend=backend)
    service.load_artefacts()
    return service


def test_send_async_response_routes_by_status_and_attaches_meta() -> None:
    backend = RecordingQueue()
    service = _loaded(backend)
    request = AsyncInputModel[TextRequest](
        message=TextRequest(text="x"), success_queue="ok", failure_queue="ko", meta={"m": 1}
    )
    good = TextResponse(result="X")
    service.send_async_response(0, good, request)
    service.send_async_response(1, InferenceOutputModel(status="error", error="nope"), request)
    service.drain()
    assert good.meta == {"m": 1}
    assert [(q, m["status"], m["meta"]) for q, m in backend.sent] == [
        ("ok", "success", {"m": 1}),
        ("ko", "error", {"m": 1}),
    ]
    assert backend.sent[1][1]["original_message"]["message"] == {"text": "x"}


def test_send_async_response_before_load_artefacts_says_what_to_do() -> None:
    class Service(ModalService):
        inference_implementation = TypedPipeline
        modal_utils = config
        model_name: str = "text-processor"

    request = AsyncInputModel[TextRequest](message=TextRequest(text="x"), success_queue="ok")
    with pytest.raises(RuntimeError, match="load_artefacts"):
        Service().send_async_response(0, TextResponse(result="X"), request)


# --- async_call / sync_call / create_web_endpoints with an instance ----------------------------------------------


class InProcessCalls(ModalCalls):
    """Modal's cloud replaced by ``.local()`` in this process (the only stand-in: no Modal account offline)."""

    def __init__(self) -> None:
        super().__init__(job_index=MemoryJobIndex())
        self._ids = itertools.count(1)
        self.futures: dict[str, Future[Any]] = {}

    async def remote(self, method: Any, request: Any) -> Any:
        [result] = await asyncio.to_thread(method.local, [request])
        return result

    async def spawn(self, method: Any, request: Any) -> str:
        call_id = f"fc-{next(self._ids)}"
        future: Future[Any] = Future()
        self.futures[call_id] = future

        def run() -> None:
            [result] = method.local([request])
            future.set_result(result)

        threading.Thread(target=run, daemon=True).start()
        return call_id

    async def poll(self, call_id: str) -> Any:
        future = self.futures[call_id]
        if not future.done():
            raise TimeoutError
        return future.result()


@pytest.fixture
def modal_app() -> Any:
    app = modal.App("compat-calls")

    @app.cls(serialized=True)
    class TranslationApp(ModalService):
        inference_implementation = TypedPipeline
        modal_utils = config
        model_name: str = modal.parameter(default="text-processor")

    return TranslationApp


async def test_sync_call_runs_the_batched_method(modal_app: Any) -> None:
    sync_fn = ModalService.sync_call(modal_app, calls=InProcessCalls())
    result = await sync_fn("text-processor", SyncInputModel(message=TextRequest(text="hi")))
    assert isinstance(result, TextResponse)
    assert result.result == "HI"


async def test_sync_call_raises_an_http_error_for_a_refused_input(modal_app: Any) -> None:
    sync_fn = ModalService.sync_call(modal_app, calls=InProcessCalls())
    with pytest.raises(HTTPException) as info:
        await sync_fn("text-processor", SyncInputModel(message=TextRequest(text="boom")))
    assert info.value.status_code == 422
    assert "cannot say boom" in str(info.value.detail)


async def test_async_call_returns_a_job_id_and_the_job_runs(modal_app: Any) -> None:
    calls = InProcessCalls()
    async_fn = ModalService.async_call(modal_app, calls=calls)
    output = await async_fn("text-processor", AsyncInputModel(message=TextRequest(text="later")))
    assert isinstance(output, AsyncOutputModel)
    call_id = await calls.job_index.get(output.job_id)  # type: ignore[union-attr]
    assert call_id is not None
    result = await asyncio.wrap_future(calls.futures[call_id])
    assert result.result == "LATER"


async def test_create_web_endpoints_accepts_an_instance(modal_app: Any) -> None:
    service = modal_app(model_name="text-processor")
    app = create_web_endpoints(
        app_cls=service, input_model=TextRequest, output_model=TextResponse, calls=InProcessCalls()
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modal.test") as client:
        response = await client.post("/predict_sync", params={"model_name": "text-processor"}, json={"text": "web"})
    assert response.status_code == 200
    assert response.json()["result"] == "WEB"


def test_making_the_call_functions_reads_nothing_from_the_class() -> None:
    class NotYetComplete(ModalService):
        pass  # no inference_implementation: only the call would need it

    assert callable(ModalService.async_call(NotYetComplete))
    assert callable(ModalService.sync_call(NotYetComplete))
