"""/docs and /redoc load with no network: their JavaScript, CSS and icon are served by the app itself."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from modalkit_queue import MemoryBackend
from modalkit_serve import LocalRunner, create_app
from serve_support import ToyInput, ToyOutput, ToyPipeline, toy_settings

_ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")
_URL = re.compile(r"""https?://[^\s"'<>)]+""")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = toy_settings()
    runner = LocalRunner(ToyPipeline, settings, queue_backend=MemoryBackend())
    app = create_app(runner, ToyInput, ToyOutput, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://modalkit.test") as c:
        yield c


@pytest.mark.parametrize(("page", "kinds"), [("/docs", {".js", ".css"}), ("/redoc", {".js"})])
async def test_docs_pages_reference_only_local_assets(client: httpx.AsyncClient, page: str, kinds: set[str]) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    assert _URL.findall(html) == [], f"{page} still points off the machine"
    assets = _ASSET.findall(html)
    assert {a[a.rfind(".") :] for a in assets} >= kinds, assets
    for asset in assets:
        assert asset.startswith("/"), asset
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset
        if asset.endswith(".js"):
            assert "javascript" in served.headers["content-type"], asset
        if asset.endswith(".css"):
            assert served.headers["content-type"].startswith("text/css"), asset


async def test_static_assets_are_not_a_directory_listing(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    folder = _ASSET.findall(html)[0].rsplit("/", 1)[0]
    assert (await client.get(folder + "/../../pyproject.toml")).status_code == 404
    assert (await client.get(folder + "/")).status_code == 404
