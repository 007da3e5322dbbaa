"""``modalkit.fast_api.create_app``: the earlier low-level app builder, with the user's own call functions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Header, HTTPException
from pydantic import BaseModel

from modalkit.fast_api import create_app
from modalkit.iomodel import AsyncInputModel, AsyncOutputModel, SyncInputModel


class Question(BaseModel):
    text: str


class Answer(BaseModel):
    answer: str


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def calls() -> list[tuple[str, str, BaseModel]]:
    return []


@pytest.fixture
def app(calls: list[tuple[str, str, BaseModel]]) -> Any:
    async def sync_fn(model_name: str, request: BaseModel) -> Answer:
        calls.append(("sync", model_name, request))
        assert isinstance(request, SyncInputModel)
        return Answer(answer=request.message.text.upper())

    async def async_fn(model_name: str, request: BaseModel) -> AsyncOutputModel:
        calls.append(("async", model_name, request))
        return AsyncOutputModel(job_id="job-1")

    def api_key(x_api_key: str = Header(default="")) -> None:
        if x_api_key != "secret":
            raise HTTPException(status_code=401, detail="bad key")

    return create_app(
        input_model=Question,
        output_model=Answer,
        dependencies=[],
        router_dependency=api_key,
        sync_fn=sync_fn,
        async_fn=async_fn,
    )


async def test_sync_route_validates_wraps_and_calls_the_users_function(app: Any, calls: list[Any]) -> None:
    async with _client(app) as client:
        response = await client.post(
            "/predict_sync", params={"model_name": "m1"}, json={"text": "hi"}, headers={"x-api-key": "secret"}
        )
    assert response.status_code == 200
    assert response.json() == {"answer": "HI"}
    [(kind, model, request)] = calls
    assert (kind, model) == ("sync", "m1")
    assert request.message == Question(text="hi")


async def test_async_route_parses_the_queue_envelope(app: Any, calls: list[Any]) -> None:
    body = {"message": {"text": "hi"}, "success_queue": "ok", "failure_queue": "ko", "meta": {"user": 7}}
    async with _client(app) as client:
        response = await client.post(
            "/predict_async", params={"model_name": "m1"}, json=body, headers={"x-api-key": "secret"}
        )
    assert response.status_code == 200
    assert response.json() == {"job_id": "job-1"}
    [(kind, _, request)] = calls
    assert kind == "async"
    assert isinstance(request, AsyncInputModel)
    assert request.message == Question(text="hi")
    assert (request.success_queue, request.failure_queue, request.meta) == ("ok", "ko", {"user": 7})


async def test_router_dependency_guards_both_routes(app: Any, calls: list[Any]) -> None:
    async with _client(app) as client:
        sync = await client.post("/predict_sync", params={"model_name": "m1"}, json={"text": "hi"})
        async_ = await client.post("/predict_async", params={"model_name": "m1"}, json={"message": {"text": "x"}})
    assert (sync.status_code, async_.status_code) == (401, 401)
    assert calls == []


async def test_bad_input_is_a_422_naming_the_field(app: Any, calls: list[Any]) -> None:
    async with _client(app) as client:
        response = await client.post(
            "/predict_sync", params={"model_name": "m1"}, json={"txt": "hi"}, headers={"x-api-key": "secret"}
        )
    assert response.status_code == 422
    assert "text" in response.text
    assert calls == []


async def test_without_router_dependency_the_routes_are_open() -> None:
    async def sync_fn(model_name: str, request: Any) -> dict[str, str]:
        return {"answer": model_name}

    async def async_fn(model_name: str, request: Any) -> dict[str, str]:
        return {"job_id": "j"}

    seen: list[str] = []

    def app_dependency() -> None:
        seen.append("app")

    app = create_app(
        input_model=Question,
        output_model=Answer,
        dependencies=[app_dependency, None],
        router_dependency=None,
        sync_fn=sync_fn,
        async_fn=async_fn,
    )
    async with _client(app) as client:
        response = await client.post("/predict_sync", params={"model_name": "m2"}, json={"text": "x"})
    assert response.json() == {"answer": "m2"}
    assert seen == ["app"]
