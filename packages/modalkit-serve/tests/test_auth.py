"""Auth on the service, with modalkit_auth's real Authenticator, on both the ASGI fast path and FastAPI's routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import pytest
from fastapi import Header, HTTPException

from modalkit_auth import Authenticator, KeySourceError, ProxyCredentials
from modalkit_queue import MemoryBackend
from modalkit_serve import LocalRunner, create_app
from modalkit_serve._app import AuthenticatorLike
from serve_support import ToyInput, ToyOutput, ToyPipeline, toy_settings

GUARD = 10.0
KEY = "k3y-for-tests"


@asynccontextmanager
async def serve(authenticator: AuthenticatorLike, *, fast_path: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    settings = toy_settings()
    runner = LocalRunner(ToyPipeline, settings, queue_backend=MemoryBackend())
    app = create_app(runner, ToyInput, ToyOutput, settings, authenticator, fast_path=fast_path)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), GUARD)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://modalkit.test") as c:
            yield c


@pytest.fixture(params=[True, False], ids=["asgi-fast-path", "fastapi-routes"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_predict_routes_need_the_api_key(fast_path: bool) -> None:
    async with serve(Authenticator(keys=[KEY]), fast_path=fast_path) as client:
        missing = await client.post("/predict_sync", json={"text": "a"})
        wrong = await client.post("/predict_sync", json={"text": "a"}, headers={"x-api-key": "nope"})
        right = await client.post("/predict_sync", json={"text": "a"}, headers={"x-api-key": KEY})
        batch = await client.post("/predict_batch", json=[{"text": "a"}])
        queued = await client.post("/predict_async", json={"message": {"text": "a"}})
        job = await client.get("/jobs/whatever")

    assert missing.status_code == 401
    assert "apikey" in missing.headers["www-authenticate"].lower()
    assert "x-request-id" in missing.headers
    assert wrong.status_code == 401
    assert wrong.json() == missing.json()  # same answer whatever was wrong
    assert KEY not in wrong.text
    assert right.status_code == 200
    assert batch.status_code == 401
    assert queued.status_code == 401
    assert job.status_code == 401


async def test_health_ready_and_metrics_stay_open_by_default() -> None:
    async with serve(Authenticator(keys=[KEY])) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
        metrics = await client.get("/metrics")

    assert (health.status_code, ready.status_code, metrics.status_code) == (200, 200, 200)


async def test_metrics_can_be_protected() -> None:
    async with serve(Authenticator(keys=[KEY], protect_metrics=True)) as client:
        refused = await client.get("/metrics")
        allowed = await client.get("/metrics", headers={"x-api-key": KEY})

    assert refused.status_code == 401
    assert allowed.status_code == 200


async def test_modal_proxy_auth_checked_locally(fast_path: bool) -> None:
    proxy = Authenticator(proxy=ProxyCredentials(key="wk-1", secret="ws-1"))
    async with serve(proxy, fast_path=fast_path) as client:
        missing = await client.post("/predict_sync", json={"text": "a"})
        half = await client.post("/predict_sync", json={"text": "a"}, headers={"Modal-Key": "wk-1"})
        both = await client.post(
            "/predict_sync", json={"text": "a"}, headers={"Modal-Key": "wk-1", "Modal-Secret": "ws-1"}
        )

    assert missing.status_code == 401
    assert half.status_code == 401
    assert both.status_code == 200


class _Unreachable:
    name = "a key store that is down"

    def fetch(self) -> list[str]:
        raise KeySourceError("connection refused")


async def test_keys_not_loaded_means_not_ready_and_503(fast_path: bool, caplog: pytest.LogCaptureFixture) -> None:
    async with serve(Authenticator(key_source=_Unreachable()), fast_path=fast_path) as client:
        ready = await client.get("/ready")
        refused = await client.post("/predict_sync", json={"text": "a"}, headers={"x-api-key": KEY})

    assert ready.status_code == 503
    assert "auth" in ready.json()["detail"]
    assert refused.status_code == 503
    assert "retry-after" in refused.headers


async def require_team(x_team: Annotated[str | None, Header()] = None) -> None:
    if x_team != "ml":
        raise HTTPException(status_code=403, detail="wrong team")


class TeamAuth:
    """An authenticator of the user's own: a FastAPI dependency, start, stop and ready. Not modalkit_auth's."""

    protect_metrics = False
    ready = True

    def __init__(self) -> None:
        self.dependency: Callable[..., Awaitable[None]] = require_team

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def test_a_custom_authenticator_goes_through_fastapi_dependencies() -> None:
    async with serve(TeamAuth()) as client:
        refused = await client.post("/predict_sync", json={"text": "a"})
        allowed = await client.post("/predict_sync", json={"text": "a"}, headers={"x-team": "ml"})

    assert refused.status_code == 403
    assert allowed.status_code == 200


async def test_the_openapi_document_declares_the_key_header() -> None:
    async with serve(Authenticator(keys=[KEY])) as client:
        doc = (await client.get("/openapi.json")).json()

    assert "401" in doc["paths"]["/predict_sync"]["post"]["responses"]
    schemes = doc["components"].get("securitySchemes", {})
    assert any(s.get("name") == "x-api-key" for s in schemes.values())
