"""/docs (Swagger UI) and /redoc with their JavaScript, CSS and icon served by the app, so they load offline.

FastAPI's own pages fetch their assets from a CDN, which leaves /docs blank on a machine with no network. The
assets come from the `fastapi-offline` wheel (Swagger UI 5, which renders the OpenAPI 3.1 that FastAPI
writes; the `swagger-ui-bundle` wheel still ships Swagger UI 4, which refuses 3.1). Only its static files are
used, each served from a fixed name (no folder is exposed), read once and kept in memory.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Awaitable, Callable, Sequence
from functools import cache

from fastapi import FastAPI, params
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

__all__ = ["ASSET_PREFIX", "add_offline_docs"]

ASSET_PREFIX = "/docs/assets"
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_CACHE = "public, max-age=86400"


@cache
def _asset(name: str) -> bytes:
    return (importlib.resources.files("fastapi_offline") / "static" / name).read_bytes()


def add_offline_docs(
    app: FastAPI,
    *,
    docs_url: str = "/docs",
    redoc_url: str = "/redoc",
    dependencies: Sequence[params.Depends] | None = None,
) -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` from local assets.

    The app must have been built with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages off).
    ``dependencies`` (auth) guard the two pages; the static assets and the OAuth2 redirect page stay open.
    """
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_url = f"{docs_url}/oauth2-redirect"
    title = app.title

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=oauth2_url,
            swagger_js_url=f"{ASSET_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSET_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{ASSET_PREFIX}/favicon.png",
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSET_PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSET_PREFIX}/favicon.png",
            with_google_fonts=False,
        )

    guard = list(dependencies or ())
    app.add_api_route(docs_url, swagger, include_in_schema=False, dependencies=guard)
    app.add_api_route(oauth2_url, oauth2_redirect, include_in_schema=False)
    app.add_api_route(redoc_url, redoc, include_in_schema=False, dependencies=guard)
    for name, media_type in _ASSETS.items():
        app.add_api_route(f"{ASSET_PREFIX}/{name}", _serve_asset(name, media_type), include_in_schema=False)


def _serve_asset(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return Response(_asset(name), media_type=media_type, headers={"Cache-Control": _CACHE})

    return serve
