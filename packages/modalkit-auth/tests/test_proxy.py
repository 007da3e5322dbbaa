"""Modal proxy auth checked locally: `deployment_config.secure` requires Modal-Key/Modal-Secret headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from modalkit_auth import AuthConfigError, Authenticator, build_authenticator
from modalkit_config import AppSettings

PROTECTED = [
    ("POST", "/predict_sync?model_name=m"),
    ("POST", "/predict_batch?model_name=m"),
    ("POST", "/predict_async?model_name=m"),
    ("GET", "/jobs/abc"),
]


def secure_settings(**extra: Any) -> AppSettings:
    return AppSettings.model_validate(
        {
            "app_prefix": "t",
            "deployment_config": {"secure": True},
            "proxy_auth": {"key_env": "MK_TEST_PROXY_KEY", "secret_env": "MK_TEST_PROXY_SECRET"},
            **extra,
        }
    )


@pytest.fixture
def proxy_pair(new_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    key, secret = new_key("wk-"), new_key("ws-")
    monkeypatch.setenv("MK_TEST_PROXY_KEY", key)
    monkeypatch.setenv("MK_TEST_PROXY_SECRET", secret)
    return key, secret


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def built(settings: AppSettings, **kwargs: Any) -> Authenticator:
    auth = build_authenticator(settings, **kwargs)
    assert auth is not None
    return auth


CASES: list[tuple[str, Callable[[str, str, str], dict[str, str]], int]] = [
    ("no headers", lambda k, s, w: {}, 401),
    ("key only", lambda k, s, w: {"Modal-Key": k}, 401),
    ("secret only", lambda k, s, w: {"Modal-Secret": s}, 401),
    ("empty secret", lambda k, s, w: {"Modal-Key": k, "Modal-Secret": ""}, 401),
    ("wrong key", lambda k, s, w: {"Modal-Key": w, "Modal-Secret": s}, 401),
    ("wrong secret", lambda k, s, w: {"Modal-Key": k, "Modal-Secret": w}, 401),
    ("swapped", lambda k, s, w: {"Modal-Key": s, "Modal-Secret": k}, 401),
    ("very long secret", lambda k, s, w: {"Modal-Key": k, "Modal-Secret": s * 100_000}, 401),
    ("right pair", lambda k, s, w: {"Modal-Key": k, "Modal-Secret": s}, 200),
    ("right pair, lowercase names", lambda k, s, w: {"modal-key": k, "modal-secret": s}, 200),
    ("right pair, uppercase names", lambda k, s, w: {"MODAL-KEY": k, "MODAL-SECRET": s}, 200),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(("case", "headers", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_proxy_auth_table_on_every_protected_route(
    method: str,
    path: str,
    case: str,
    headers: Callable[[str, str, str], dict[str, str]],
    expected: int,
    proxy_pair: tuple[str, str],
    new_key: Callable[..., str],
    make_app: Callable[[Authenticator], FastAPI],
) -> None:
    sent = headers(*proxy_pair, new_key())
    async with client(make_app(built(secure_settings()))) as c:
        resp = await c.request(method, path, headers=sent, json={} if method == "POST" else None)
    assert resp.status_code == expected, case
    if expected == 401:
        assert resp.json() == {"detail": "Not authenticated"}
        assert "Modal-Key" in resp.headers["www-authenticate"]
        for value in sent.values():
            if value:
                assert value not in resp.text


async def test_health_and_ready_stay_open_under_proxy_auth(
    proxy_pair: tuple[str, str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    async with client(make_app(built(secure_settings()))) as c:
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/ready")).status_code == 200


async def test_api_key_and_proxy_auth_together_need_both(
    proxy_pair: tuple[str, str], new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    k, s = proxy_pair
    api_key = new_key()
    auth = built(secure_settings(auth_config={"api_key": api_key}))
    both = {"Modal-Key": k, "Modal-Secret": s, "x-api-key": api_key}
    async with client(make_app(auth)) as c:
        assert (await c.post("/predict_sync", headers=both)).status_code == 200
        no_api = await c.post("/predict_sync", headers={"Modal-Key": k, "Modal-Secret": s})
        no_proxy = await c.post("/predict_sync", headers={"x-api-key": api_key})
        wrong_api = await c.post("/predict_sync", headers={**both, "x-api-key": new_key()})
    assert {r.status_code for r in (no_api, no_proxy, wrong_api)} == {401}
    # The same response whichever part was wrong.
    assert len({(r.content, r.headers["www-authenticate"]) for r in (no_api, no_proxy, wrong_api)}) == 1


async def test_on_modal_the_proxy_check_is_left_to_modal(
    proxy_pair: tuple[str, str], new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    api_key = new_key()
    auth = built(secure_settings(auth_config={"api_key": api_key}), on_modal=True)
    assert auth.proxy_auth is False
    async with client(make_app(auth)) as c:
        assert (await c.post("/predict_sync", headers={"x-api-key": api_key})).status_code == 200
        assert (await c.post("/predict_sync")).status_code == 401
    # Secure with no API key: Modal does all the checking, so there is nothing to add locally.
    assert build_authenticator(secure_settings(), on_modal=True) is None


def test_missing_proxy_env_vars_are_a_clear_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MK_TEST_PROXY_KEY", raising=False)
    monkeypatch.setenv("MK_TEST_PROXY_SECRET", "something")
    with pytest.raises(AuthConfigError) as err:
        build_authenticator(secure_settings())
    message = str(err.value)
    assert "MK_TEST_PROXY_KEY" in message
    assert "deployment_config.secure" in message
    assert "proxy_auth.key_env" in message
    assert "something" not in message


def test_empty_proxy_env_var_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MK_TEST_PROXY_KEY", "k")
    monkeypatch.setenv("MK_TEST_PROXY_SECRET", "  ")
    with pytest.raises(AuthConfigError, match="MK_TEST_PROXY_SECRET"):
        build_authenticator(secure_settings())


def test_not_secure_ignores_proxy_auth(new_key: Callable[..., str]) -> None:
    auth = built(AppSettings.model_validate({"app_prefix": "t", "auth_config": {"api_key": new_key()}}))
    assert auth.proxy_auth is False
    assert auth.api_key_auth is True
