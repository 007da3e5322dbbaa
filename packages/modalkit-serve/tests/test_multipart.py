"""File uploads: multipart/form-data on /predict_sync and /predict_stream reaches the pipeline as the same typed
input as base64 in JSON; a file over server_config.max_file_bytes is a 413 before the rest is read; media types
are checked; cross-site form posts are refused; the OpenAPI document describes the upload form."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.types import Message

from modalkit_pipeline import Binary, InferenceOutputModel, InferencePipeline, ItemError, accepts
from modalkit_queue import MemoryBackend
from modalkit_serve import LocalRunner, create_app
from serve_support import settings_with

GUARD = 10.0
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class Photo(BaseModel):
    image: Annotated[Binary, accepts("image/png", "image/jpeg")]
    caption: str = ""
    scale: int = 1
    tags: list[str] = []


class Described(InferenceOutputModel):
    size: int
    sha256: str
    caption: str
    scale: int
    tags: list[str]


class Describe(InferencePipeline[Photo, Described]):
    def preprocess(self, input_list: list[Photo]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[Photo], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[Photo], raw_output: dict[str, Any]) -> list[Described | ItemError]:
        return [
            Described(
                size=len(p.image),
                sha256=hashlib.sha256(p.image).hexdigest(),
                caption=p.caption,
                scale=p.scale,
                tags=p.tags,
            )
            for p in input_list
        ]


@pytest.fixture(params=[True, False], ids=["asgi-fast-path", "fastapi-routes"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def make_app(fast_path: bool = True, server: dict[str, Any] | None = None) -> tuple[Any, LocalRunner]:
    settings = settings_with(models={"describe": {}}, server=server)
    runner = LocalRunner(Describe, settings, queue_backend=MemoryBackend())
    return create_app(runner, Photo, Described, settings, fast_path=fast_path), runner


@asynccontextmanager
async def serve(fast_path: bool = True, server: dict[str, Any] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app, runner = make_app(fast_path, server)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), GUARD)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client


async def test_a_multipart_upload_and_a_base64_body_give_the_same_result(fast_path: bool) -> None:
    async with serve(fast_path) as client:
        uploaded = await client.post(
            "/predict_sync",
            files={"image": ("cat.png", PNG, "image/png")},
            data={"caption": "a cat", "scale": "3", "tags": '["pet", "cat"]'},
        )
        as_json = await client.post(
            "/predict_sync",
            json={"image": base64.b64encode(PNG).decode(), "caption": "a cat", "scale": 3, "tags": ["pet", "cat"]},
        )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == as_json.json()
    assert uploaded.json()["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert uploaded.json()["scale"] == 3


async def test_a_file_over_the_per_file_limit_is_413_naming_the_field(fast_path: bool) -> None:
    async with serve(fast_path, server={"max_file_bytes": 100}) as client:
        response = await client.post("/predict_sync", files={"image": ("big.png", PNG, "image/png")})
    assert response.status_code == 413
    assert "image" in response.json()["detail"]
    assert "max_file_bytes" in response.json()["detail"]


async def test_an_oversized_file_is_refused_before_the_rest_of_the_body_is_read() -> None:
    app, runner = make_app(server={"max_file_bytes": 1000, "max_body_bytes": 10_000_000})
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    pieces = [head] + [b"\0" * 1000] * 1000  # a 1 MB file, sent in 1 kB pieces
    sent: list[Message] = []
    read = 0

    async def receive() -> Message:
        nonlocal read
        if read < len(pieces):
            read += 1
            return {"type": "http.request", "body": pieces[read - 1], "more_body": True}
        await asyncio.sleep(GUARD)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/predict_sync",
        "raw_path": b"/predict_sync",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t"), (b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), GUARD)
        await asyncio.wait_for(app(scope, receive, send), GUARD)
    assert sent[0]["status"] == 413
    assert read <= 3  # stopped at the first piece past the limit, not after the whole megabyte


async def test_a_file_of_a_type_the_field_does_not_take_is_415(fast_path: bool) -> None:
    async with serve(fast_path) as client:
        response = await client.post("/predict_sync", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert "image" in detail
    assert "image/png" in detail
    assert "text/plain" in detail


async def test_a_missing_file_or_bad_field_is_a_422_at_its_field(fast_path: bool) -> None:
    async with serve(fast_path) as client:
        missing = await client.post(
            "/predict_sync", files={"other": ("x.txt", b"text", "text/plain")}, data={"caption": "c"}
        )
        bad = await client.post("/predict_sync", files={"image": ("x.png", PNG, "image/png")}, data={"scale": "three"})
    assert missing.status_code == 422
    assert ["body", "image"] in [p["loc"] for p in missing.json()["detail"]]
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "scale"]


async def test_a_form_posted_from_another_site_is_refused(fast_path: bool) -> None:
    async with serve(fast_path) as client:
        response = await client.post(
            "/predict_sync", files={"image": ("x.png", PNG, "image/png")}, headers={"origin": "http://evil.example"}
        )
        same_site = await client.post(
            "/predict_sync", files={"image": ("x.png", PNG, "image/png")}, headers={"origin": "http://t"}
        )
    assert response.status_code == 403
    assert same_site.status_code == 200


async def test_batch_and_async_routes_take_files_as_base64_json_only(fast_path: bool) -> None:
    async with serve(fast_path) as client:
        batch = await client.post("/predict_batch", files={"image": ("x.png", PNG, "image/png")})
        ok = await client.post("/predict_batch", json=[{"image": base64.b64encode(PNG).decode()}])
    assert batch.status_code == 415
    assert ok.status_code == 200


async def test_openapi_describes_the_upload_form_for_swagger() -> None:
    async with serve() as client:
        doc = (await client.get("/openapi.json")).json()
    form = doc["paths"]["/predict_sync"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["image"] == {"type": "string", "format": "binary", "title": "Image"}
    assert form["schema"]["required"] == ["image"]
    assert form["encoding"]["image"]["contentType"] == "image/png, image/jpeg"
    assert "application/json" in doc["paths"]["/predict_sync"]["post"]["requestBody"]["content"]
