"""The API-key dependency on every protected route: the table of cases, for literal and environment keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from modalkit_auth import Authenticator, build_authenticator
from modalkit_config import AppSettings

PROTECTED = [
    ("POST", "/predict_sync?model_name=m"),
    ("POST", "/predict_batch?model_name=m"),
    ("POST", "/predict_async?model_name=m"),
    ("GET", "/jobs/abc"),
]
OPEN = [("GET", "/health"), ("GET", "/ready")]

# (case, headers given the right key and a wrong one, expected status)
CASES: list[tuple[str, Callable[[str, str], dict[str, str]], int]] = [
    ("no header", lambda key, wrong: {}, 401),
    ("empty header", lambda key, wrong: {"x-api-key": ""}, 401),
    ("wrong header name", lambda key, wrong: {"x-api-token": key}, 401),
    ("key in another header too", lambda key, wrong: {"authorization": f"Bearer {key}"}, 401),
    ("wrong key", lambda key, wrong: {"x-api-key": wrong}, 401),
    ("right key with a byte more", lambda key, wrong: {"x-api-key": key + "x"}, 401),
    ("right key less its last byte", lambda key, wrong: {"x-api-key": key[:-1]}, 401),
    ("right key", lambda key, wrong: {"x-api-key": key}, 200),
    ("lowercase header name", lambda key, wrong: {"x-api-key": key}, 200),
    ("uppercase header name", lambda key, wrong: {"X-API-KEY": key}, 200),
    ("mixed-case header name", lambda key, wrong: {"X-Api-Key": key}, 200),
    ("very long key", lambda key, wrong: {"x-api-key": key * 50_000}, 401),
    ("very long key of a valid prefix", lambda key, wrong: {"x-api-key": key + "A" * 1_000_000}, 401),
]


def settings(auth_config: dict[str, Any], **extra: Any) -> AppSettings:
    return AppSettings.model_validate({"app_prefix": "t", "auth_config": auth_config, **extra})


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def call(c: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    return await c.request(method, path, headers=headers, json={} if method == "POST" else None)


def literal(key: str) -> Authenticator:
    auth = build_authenticator(settings({"api_key": key}))
    assert auth is not None
    return auth


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(("case", "headers", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_table_of_cases_on_every_protected_route(
    method: str,
    path: str,
    case: str,
    headers: Callable[[str, str], dict[str, str]],
    expected: int,
    new_key: Callable[..., str],
    make_app: Callable[[Authenticator], FastAPI],
) -> None:
    key, wrong = new_key(), new_key()
    auth = literal(key)
    sent = headers(key, wrong)
    async with client(make_app(auth)) as c:
        resp = await call(c, method, path, sent)
    assert resp.status_code == expected, case
    if expected == 401:
        assert resp.headers["www-authenticate"] == 'ApiKey header="x-api-key"'
        assert resp.json() == {"detail": "Not authenticated"}
        for value in sent.values():
            if value:
                assert value not in resp.text
                assert value not in str(resp.headers)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_401_is_the_same_response(
    method: str, path: str, new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    key, wrong = new_key(), new_key()
    async with client(make_app(literal(key))) as c:
        responses = [await call(c, method, path, h(key, wrong)) for _, h, status in CASES if status == 401]
    bodies = {(r.status_code, r.content, r.headers["www-authenticate"]) for r in responses}
    assert len(bodies) == 1


@pytest.mark.parametrize(("method", "path"), OPEN)
async def test_health_and_ready_stay_open(
    method: str, path: str, new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    async with client(make_app(literal(new_key()))) as c:
        resp = await call(c, method, path, {})
    assert resp.status_code == 200


async def test_metrics_open_unless_protect_metrics(
    new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    key = new_key()
    open_auth = literal(key)
    assert open_auth.protect_metrics is False
    async with client(make_app(open_auth)) as c:
        assert (await c.get("/metrics")).status_code == 200

    closed = build_authenticator(settings({"api_key": key, "protect_metrics": True}))
    assert closed is not None
    assert closed.protect_metrics is True
    async with client(make_app(closed)) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"x-api-key": key})).status_code == 200


async def test_configured_header_name_is_matched_case_insensitively(
    new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    key = new_key()
    auth = build_authenticator(settings({"api_key": key, "header": "X-Service-Token"}))
    assert auth is not None
    async with client(make_app(auth)) as c:
        for name in ("x-service-token", "X-SERVICE-TOKEN", "X-Service-Token"):
            assert (await c.post("/predict_sync", headers={name: key})).status_code == 200
        missing = await c.post("/predict_sync", headers={"x-api-key": key})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'ApiKey header="X-Service-Token"'


async def test_several_literal_keys_are_valid_at_once(
    new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    keys = [new_key(), new_key(), new_key()]
    auth = build_authenticator(settings({"api_key": keys}))
    assert auth is not None
    async with client(make_app(auth)) as c:
        for key in keys:
            assert (await c.post("/predict_sync", headers={"x-api-key": key})).status_code == 200
        assert (await c.post("/predict_sync", headers={"x-api-key": new_key()})).status_code == 401


async def test_keys_from_an_environment_variable_comma_separated(
    new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = new_key(), new_key()
    monkeypatch.setenv("MK_TEST_API_KEYS", f" {old} ,{new},")
    auth = build_authenticator(settings({"api_key_env": "MK_TEST_API_KEYS"}))
    assert auth is not None
    assert auth.ready
    async with client(make_app(auth)) as c:
        for key in (old, new):
            assert (await c.post("/predict_batch", headers={"x-api-key": key})).status_code == 200
        assert (await c.post("/predict_batch", headers={"x-api-key": f"{old},{new}"})).status_code == 401
        assert (await c.post("/predict_batch", headers={"x-api-key": new_key()})).status_code == 401


def test_no_auth_config_and_not_secure_builds_nothing() -> None:
    assert build_authenticator(AppSettings.model_validate({"app_prefix": "t"})) is None


def test_the_dependency_is_documented_as_an_api_key_header_in_openapi(
    new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    schema = make_app(literal(new_key())).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "x-api-key"} in [
        {k: v for k, v in s.items() if k in ("type", "in", "name")} for s in schemes.values()
    ]
    assert "security" in schema["paths"]["/predict_sync"]["post"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_identity_is_a_stable_digest_of_the_presented_key_and_never_the_key() -> None:
    auth = Authenticator(keys=["key-one", "key-two"])
    one = auth.identity([(b"x-api-key", b"key-one")])
    again = Authenticator(keys=["key-one"]).identity([(b"content-type", b"x"), (b"x-api-key", b"key-one")])
    two = auth.identity([(b"x-api-key", b"key-two")])

    assert one is not None
    assert one == again  # stable across instances (and restarts): journaled jobs keep their owner
    assert one != two
    assert "key-one" not in one
    assert auth.identity([(b"content-type", b"x")]) is None
