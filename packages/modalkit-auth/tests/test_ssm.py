"""Keys from AWS SSM, through moto's server on loopback and real boto3 HTTP calls.

Waits poll a condition with a generous give-up bound; nothing here asserts how fast anything is.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from modalkit_auth import Authenticator, build_authenticator
from modalkit_auth.ssm import SsmKeySource
from modalkit_config import AppSettings

PARAM = "/modalkit/test/api-key"
GIVE_UP_SECONDS = 30.0
Status = Callable[[str | None], Awaitable[int]]


def ssm_settings(**auth: Any) -> AppSettings:
    return AppSettings.model_validate(
        {"app_prefix": "t", "auth_config": {"ssm_key": PARAM, "cache_ttl_seconds": 0.2, **auth}}
    )


def built(**auth: Any) -> Authenticator:
    authenticator = build_authenticator(ssm_settings(**auth))
    assert authenticator is not None
    return authenticator


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GIVE_UP_SECONDS
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def serving(auth: Authenticator, make_app: Callable[[Authenticator], FastAPI]) -> AsyncIterator[Status]:
    await auth.start()
    try:
        transport = httpx.ASGITransport(app=make_app(auth))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def status(key: str | None) -> int:
                headers = {} if key is None else {"x-api-key": key}
                return (await client.post("/predict_sync?model_name=m", headers=headers, json={})).status_code

            yield status
    finally:
        await auth.stop()


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("modalkit_auth") and r.levelno >= logging.ERROR]


async def test_a_key_put_in_ssm_authorizes_requests(
    put_parameter: Callable[..., None], new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    key = new_key()
    put_parameter(PARAM, key)
    auth = built()
    async with serving(auth, make_app) as status:
        assert auth.ready
        assert await status(key) == 200
        assert await status(new_key()) == 401
        assert await status(None) == 401


async def test_several_comma_separated_keys_in_one_parameter(
    put_parameter: Callable[..., None], new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    a, b = new_key(), new_key()
    put_parameter(PARAM, f"{a}, {b}")
    async with serving(built(), make_app) as status:
        assert await status(a) == 200
        assert await status(b) == 200


async def test_rotation_takes_effect_within_the_ttl_and_the_old_key_works_through_the_grace_period(
    put_parameter: Callable[..., None], new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    old, new = new_key(), new_key()
    put_parameter(PARAM, old)
    async with serving(built(grace_period_seconds=3600), make_app) as status:
        assert await status(old) == 200
        assert await status(new) == 401
        put_parameter(PARAM, new)

        async def new_key_works() -> bool:
            return await status(new) == 200

        await eventually(new_key_works, "the rotated key to be accepted")
        assert await status(old) == 200  # still inside the grace period
        assert await status(new_key()) == 401


async def test_the_old_key_stops_working_after_the_grace_period(
    put_parameter: Callable[..., None], new_key: Callable[..., str], make_app: Callable[[Authenticator], FastAPI]
) -> None:
    old, new = new_key(), new_key()
    put_parameter(PARAM, old)
    async with serving(built(grace_period_seconds=0.5), make_app) as status:
        put_parameter(PARAM, new)

        async def old_key_refused() -> bool:
            return await status(old) == 401

        await eventually(old_key_refused, "the old key to be refused after the grace period")
        assert await status(new) == 200


async def test_ssm_down_at_start_up_means_not_ready_and_503_never_open(
    aws_env: Any,
    put_parameter: Callable[..., None],
    new_key: Callable[..., str],
    make_app: Callable[[Authenticator], FastAPI],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = new_key()
    aws_env.stop()
    auth = built()
    transport = httpx.ASGITransport(app=make_app(auth))
    await auth.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert auth.ready is False
            assert (await client.get("/ready")).json() == {"ready": False}
            for headers in ({}, {"x-api-key": key}, {"x-api-key": ""}):
                resp = await client.post("/predict_sync", headers=headers, json={})
                assert resp.status_code == 503
                assert resp.headers["retry-after"]
                assert key not in resp.text
            assert (await client.get("/health")).status_code == 200
            assert any(PARAM in r.getMessage() for r in error_records(caplog))

            # SSM comes back: the background task keeps retrying and the service becomes ready.
            aws_env.start()
            put_parameter(PARAM, key)

            async def ready() -> bool:
                return auth.ready

            await eventually(ready, "the authenticator to become ready once SSM is back")
            assert (await client.post("/predict_sync", headers={"x-api-key": key}, json={})).status_code == 200
            assert (await client.post("/predict_sync", headers={"x-api-key": new_key()}, json={})).status_code == 401
    finally:
        await auth.stop()


async def test_a_missing_parameter_at_start_up_means_not_ready(
    put_parameter: Callable[..., None],
    new_key: Callable[..., str],
    make_app: Callable[[Authenticator], FastAPI],
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = built()
    async with serving(auth, make_app) as status:
        assert auth.ready is False
        assert await status(None) == 503
        messages = [r.getMessage() for r in error_records(caplog)]
        assert any(PARAM in m and "ParameterNotFound" in m for m in messages), messages
        key = new_key()
        put_parameter(PARAM, key)

        async def accepted() -> bool:
            return await status(key) == 200

        await eventually(accepted, "the key to be accepted once the parameter exists")


async def test_ssm_down_later_keeps_cached_keys_working_and_logs_an_error(
    aws_env: Any,
    put_parameter: Callable[..., None],
    new_key: Callable[..., str],
    make_app: Callable[[Authenticator], FastAPI],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = new_key()
    put_parameter(PARAM, key)
    auth = built(grace_period_seconds=0)
    async with serving(auth, make_app) as status:
        assert await status(key) == 200
        aws_env.stop()

        async def refresh_failed() -> bool:
            return bool(error_records(caplog))

        await eventually(refresh_failed, "a failed refresh to be logged")
        assert auth.ready is True
        assert await status(key) == 200
        assert await status(new_key()) == 401
        assert any(PARAM in r.getMessage() for r in error_records(caplog))


async def test_region_and_endpoint_come_from_the_config(
    aws_env: Any,
    put_parameter: Callable[..., None],
    new_key: Callable[..., str],
    make_app: Callable[[Authenticator], FastAPI],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = new_key()
    put_parameter(PARAM, key, region="eu-west-3")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    auth = built(ssm_region="eu-west-3", ssm_endpoint_url=aws_env.endpoint)
    async with serving(auth, make_app) as status:
        assert auth.ready
        assert await status(key) == 200


async def test_a_plain_string_parameter_works_but_warns(
    put_parameter: Callable[..., None],
    new_key: Callable[..., str],
    make_app: Callable[[Authenticator], FastAPI],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = new_key()
    put_parameter(PARAM, key, kind="String")
    async with serving(built(), make_app) as status:
        assert await status(key) == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("SecureString" in m for m in warnings)


async def test_not_ready_before_start_and_start_stop_are_idempotent(
    put_parameter: Callable[..., None], new_key: Callable[..., str]
) -> None:
    key = new_key()
    put_parameter(PARAM, key)
    auth = built()
    assert auth.ready is False
    await auth.start()
    await auth.start()
    assert auth.ready is True
    await auth.stop()
    await auth.stop()
    assert key not in repr(auth)


def test_fetch_reads_the_decrypted_value_and_botocore_debug_logs_do_not_leak_it(
    put_parameter: Callable[..., None], new_key: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    put_parameter(PARAM, key)
    source = SsmKeySource(PARAM)
    caplog.set_level(logging.DEBUG)
    caplog.clear()  # the test's own put_parameter was logged (botocore logs request bodies); only the fetch counts
    assert source.fetch() == [key]
    # botocore did log at DEBUG (so the watch could have seen a leak), just not the response body.
    assert any(r.name.startswith("botocore") for r in caplog.records)
    assert [r.name for r in caplog.records if key in r.getMessage()] == []
    assert PARAM in source.name
    assert key not in repr(source)


def test_without_boto3_the_error_says_which_extra_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['boto3'] = None\n"
        "from modalkit_auth.ssm import SsmKeySource\n"
        "from modalkit_auth import MissingExtraError, AuthError\n"
        "try:\n"
        "    SsmKeySource('/p')\n"
        "except MissingExtraError as exc:\n"
        "    assert isinstance(exc, ImportError) and isinstance(exc, AuthError)\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "modalkit-auth[ssm]"' in out.stdout
