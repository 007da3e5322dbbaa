"""Binary data in JSON: a pydantic ``Base64Bytes`` field reaches the pipeline as bytes, a `Binary` output goes
back as base64, bad base64 is a 422 at its field, and OpenAPI documents the fields as base64 strings."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import Base64Bytes, BaseModel, Field

from modalkit_pipeline import Binary, InferenceOutputModel, InferencePipeline, ItemError
from modalkit_serve import LocalRunner, create_app
from serve_support import settings_with

GUARD = 10.0


class Upload(BaseModel):
    image: Base64Bytes = Field(description="The image file's bytes, base64-encoded")
    name: str = "file"


class Digest(InferenceOutputModel):
    sha256: str
    size: int
    reversed_bytes: Binary


class DigestPipeline(InferencePipeline[Upload, Digest]):
    def preprocess(self, input_list: list[Upload]) -> dict[str, Any]:
        assert all(isinstance(item.image, bytes) for item in input_list)
        return {"data": [item.image for item in input_list]}

    def predict(self, input_list: list[Upload], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return preprocessed_data

    def postprocess(self, input_list: list[Upload], raw_output: dict[str, Any]) -> list[Digest | ItemError]:
        return [
            Digest(sha256=hashlib.sha256(d).hexdigest(), size=len(d), reversed_bytes=d[::-1])
            for d in raw_output["data"]
        ]


@pytest.fixture(params=[True, False], ids=["asgi-fast-path", "fastapi-routes"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_with(models={"digest": {}})
    runner = LocalRunner(DigestPipeline, settings)
    app = create_app(runner, Upload, Digest, settings, fast_path=bool(request.param))
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), GUARD)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            yield c


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def test_base64_input_reaches_the_pipeline_as_bytes_and_binary_output_returns_as_base64(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/predict_sync", json={"image": base64.b64encode(PNG).decode()})
    assert response.status_code == 200
    body = response.json()
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert body["size"] == len(PNG)
    assert base64.b64decode(body["reversed_bytes"]) == PNG[::-1]


async def test_bad_base64_is_a_422_at_its_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict_sync", json={"image": "not base64!"})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "image"]
    assert "base64" in problem["msg"].lower()


async def test_openapi_documents_the_binary_fields_as_base64_strings(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    upload = next(s for name, s in schemas.items() if name.startswith("Upload"))
    assert upload["properties"]["image"]["type"] == "string"
    assert upload["properties"]["image"]["format"] == "base64"
    digest = next(s for name, s in schemas.items() if name.startswith("Digest"))
    assert digest["properties"]["reversed_bytes"]["format"] == "base64"
