"""NaN and Infinity: refused in inputs unless the input model allows them; never sent as ``null`` for a float."""

from __future__ import annotations

import asyncio
import math
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


class Numbers(BaseModel):
    x: list[float]
    label: str = ""


class Tolerant(Numbers):
    model_config = ConfigDict(allow_inf_nan=True)


class Score(InferenceOutputModel):
    score: float


class StringScore(Score):
    model_config = ConfigDict(ser_json_inf_nan="strings")


def _mean(items: list[Numbers]) -> list[float]:
    return [sum(i.x) / len(i.x) if i.x else math.inf for i in items]


class Mean(InferencePipeline[Numbers, Score]):
    def preprocess(self, input_list: list[Numbers]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[Numbers], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {"means": _mean(input_list)}

    def postprocess(self, input_list: list[Numbers], raw_output: dict[str, Any]) -> list[Score | ItemError]:
        out_model = StringScore if self.model_kwargs.get("strings") else Score
        return [out_model(score=m) for m in raw_output["means"]]


@asynccontextmanager
async def serve(input_model: type[BaseModel] = Numbers, **entry: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_with(models={"mean": entry})
    runner = LocalRunner(Mean, settings, queue_backend=MemoryBackend())
    app = create_app(runner, input_model, Score, settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), 10)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://modalkit.test") as client:
            yield client


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
async def test_a_non_finite_input_is_a_422_naming_the_field(token: str) -> None:
    async with serve() as client:
        body = '{"x": [1, TOKEN], "label": "NaN and Infinity in a string are fine"}'.replace("TOKEN", token)
        response = await client.post("/predict_sync", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["loc"] == ["body", "x", 1]
        assert problem["type"] == "finite_number"

        batch = '[{"x": [1]}, {"x": [TOKEN]}]'.replace("TOKEN", token)
        response = await client.post("/predict_batch", content=batch, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert [p["loc"] for p in response.json()["detail"]] == [["body", 1, "x", 0]]

        job = '{"message": {"x": [TOKEN]}}'.replace("TOKEN", token)
        response = await client.post("/predict_async", content=job, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert [p["loc"] for p in response.json()["detail"]] == [["body", "message", "x", 0]]


async def test_strings_that_spell_nan_are_ordinary_text() -> None:
    async with serve() as client:
        response = await client.post("/predict_sync", json={"x": [1, 3], "label": "NaN"})
        assert response.status_code == 200
        assert response.json()["score"] == 2.0


async def test_an_input_model_that_allows_nan_gets_it() -> None:
    async with serve(Tolerant) as client:
        body = '{"x": [Infinity, 1]}'
        response = await client.post("/predict_sync", content=body, headers={"content-type": "application/json"})
        # Its mean is infinite, which the output cannot carry: a server-side failure, never a null.
        assert response.status_code == 500, response.text
        assert "'score' is inf" in response.json()["error"]
        assert "score" not in response.json()


async def test_a_non_finite_output_is_never_sent_as_null() -> None:
    async with serve() as client:
        response = await client.post("/predict_batch", json=[{"x": [2]}, {"x": []}])
        assert response.status_code == 200
        ok, failed = response.json()
        assert ok["score"] == 2.0
        assert failed["status"] == "error"
        assert failed["index"] == 1
        assert "'score' is inf" in failed["error"]
        assert "score" not in failed


async def test_an_output_model_that_chooses_a_spelling_keeps_it() -> None:
    async with serve(strings=True) as client:
        response = await client.post("/predict_sync", json={"x": []})
        assert response.status_code == 200
        assert response.json()["score"] == "Infinity"
