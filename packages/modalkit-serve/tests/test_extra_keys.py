"""Unknown input keys: one policy on every route, the input model's own ``extra`` setting, refused by default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_queue import MemoryBackend
from modalkit_serve import LocalRunner, create_app
from serve_support import settings_with


class Part(BaseModel):
    name: str


class Plain(BaseModel):
    """Says nothing about extra keys: modalkit's default applies."""

    text: str
    parts: list[Part] = []


class Ignoring(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str


class Allowing(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


class Keys(InferenceOutputModel):
    keys: list[str]


class ListKeys(InferencePipeline[Plain, Keys]):
    def preprocess(self, input_list: list[Any]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[Any], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[Any], raw_output: dict[str, Any]) -> list[Keys | ItemError]:
        return [Keys(keys=sorted(item.model_dump())) for item in input_list]


@asynccontextmanager
async def serve(input_model: type[BaseModel]) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_with(models={"keys": {}})
    runner = LocalRunner(ListKeys, settings, queue_backend=MemoryBackend())
    app = create_app(runner, input_model, Keys, settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), 10)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://modalkit.test") as client:
            yield client


async def _job_result(client: httpx.AsyncClient, job_id: str) -> Any:
    for _ in range(500):
        body = (await client.get(f"/jobs/{job_id}")).json()
        if body["status"] not in ("pending", "running"):
            return body
        await asyncio.sleep(0.01)
    raise AssertionError("the job did not finish")


async def test_by_default_an_unknown_key_is_a_422_on_every_route() -> None:
    async with serve(Plain) as client:
        response = await client.post("/predict_sync", json={"text": "a", "zzz": 1})
        assert response.status_code == 422, response.text
        assert [(p["type"], p["loc"]) for p in response.json()["detail"]] == [("extra_forbidden", ["body", "zzz"])]

        response = await client.post(
            "/predict_batch", json=[{"text": "a"}, {"text": "b", "parts": [{"name": "p", "x": 0}]}]
        )
        assert response.status_code == 422
        assert [p["loc"] for p in response.json()["detail"]] == [["body", 1, "parts", 0, "x"]]

        response = await client.post("/predict_async", json={"message": {"text": "a", "zzz": 1}})
        assert response.status_code == 422
        assert [p["loc"] for p in response.json()["detail"]] == [["body", "message", "zzz"]]
        # The wrapper's own keys were refused already; that stays.
        response = await client.post("/predict_async", json={"message": {"text": "a"}, "succes_queue": "q"})
        assert response.status_code == 422

        response = await client.post("/predict_sync", json={"text": "a", "parts": [{"name": "p"}]})
        assert response.status_code == 200
        assert response.json()["keys"] == ["parts", "text"]


@pytest.mark.parametrize(("model", "keys"), [(Ignoring, ["text"]), (Allowing, ["text", "zzz"])])
async def test_an_input_model_that_says_extra_keeps_its_choice(model: type[BaseModel], keys: list[str]) -> None:
    async with serve(model) as client:
        response = await client.post("/predict_sync", json={"text": "a", "zzz": 1})
        assert response.status_code == 200, response.text
        assert response.json()["keys"] == keys

        response = await client.post("/predict_batch", json=[{"text": "a", "zzz": 1}])
        assert response.status_code == 200
        assert response.json()[0]["keys"] == keys

        response = await client.post("/predict_async", json={"message": {"text": "a", "zzz": 1}})
        assert response.status_code == 202
        assert (await _job_result(client, response.json()["job_id"]))["result"]["keys"] == keys


@pytest.mark.parametrize(("model", "closed"), [(Plain, True), (Ignoring, False)])
async def test_the_openapi_document_states_the_policy(model: type[BaseModel], closed: bool) -> None:
    async with serve(model) as client:
        schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert (schemas[model.__name__].get("additionalProperties") is False) is closed
    if model is Plain:
        assert schemas["Part"]["additionalProperties"] is False
