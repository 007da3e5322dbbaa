"""Fixtures for the modalkit-auth tests.

Every test here runs under a log watch: each record written by any logger at any level (with its formatted
exception text) is kept, and after the test none may contain key material. Tests make their keys through the
``new_key`` fixture, which registers them, so a key that reaches a log anywhere fails the test that leaked it.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from fastapi import APIRouter, Depends, FastAPI

from modalkit_auth import Authenticator

_quiet = threading.local()


@contextmanager
def test_setup_not_watched() -> Iterator[None]:
    """Hide records this thread writes meanwhile from the watch.

    For test set-up that writes a key through boto3 (``put_parameter``): botocore logs request bodies at DEBUG,
    and the test's own writes are not what is under test. Records from other threads (the code under test
    fetches keys in worker threads) are still watched.
    """
    _quiet.active = True
    try:
        yield
    finally:
        _quiet.active = False


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(_quiet, "active", False):
            return
        text = self.format(record)
        # Also the raw pieces, in case a formatter elsewhere would render them differently.
        raw = f"{record.msg!r}\n{record.args!r}\n{record.exc_text or ''}\n{record.stack_info or ''}"
        self.texts.append(f"{text}\n{raw}")


@dataclass
class KeyWatch:
    """The keys made during one test, and everything logged while it ran."""

    keys: list[str] = field(default_factory=list)
    recorder: _Recorder = field(default_factory=_Recorder)

    def new_key(self, prefix: str = "") -> str:
        key = prefix + secrets.token_urlsafe(24)
        self.keys.append(key)
        return key

    def register(self, key: str) -> str:
        self.keys.append(key)
        return key

    def leaks(self) -> list[str]:
        """Log texts that contain any registered key."""
        return [text for text in self.recorder.texts if any(key in text for key in self.keys)]


@pytest.fixture(autouse=True)
def key_watch() -> Iterator[KeyWatch]:
    """Record every log record of every logger at DEBUG; fail the test if any holds a registered key."""
    watch = KeyWatch()
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(watch.recorder)
    # Loggers that do not propagate would bypass the root handler.
    detached = [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger) and not lg.propagate
    ]
    for lg in detached:
        lg.addHandler(watch.recorder)
    try:
        yield watch
    finally:
        root.removeHandler(watch.recorder)
        root.setLevel(old_level)
        for lg in detached:
            lg.removeHandler(watch.recorder)
    leaked = watch.leaks()
    assert not leaked, f"key material reached the logs ({len(leaked)} record(s))"


@pytest.fixture
def new_key(key_watch: KeyWatch) -> Callable[..., str]:
    """Make a random key and register it with the log watch."""
    return key_watch.new_key


def _make_app(auth: Authenticator) -> FastAPI:
    """A small app shaped like modalkit-serve's: the dependency on predict and job routes only."""
    app = FastAPI()
    protected = APIRouter(dependencies=[Depends(auth.dependency)])

    @protected.post("/predict_sync")
    async def predict_sync() -> dict[str, str]:
        return {"route": "predict_sync"}

    @protected.post("/predict_batch")
    async def predict_batch() -> dict[str, str]:
        return {"route": "predict_batch"}

    @protected.post("/predict_async")
    async def predict_async() -> dict[str, str]:
        return {"route": "predict_async"}

    @protected.get("/jobs/{job_id}")
    async def job(job_id: str) -> dict[str, str]:
        return {"route": "jobs", "job_id": job_id}

    app.include_router(protected)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": auth.ready}

    metrics_deps = [Depends(auth.dependency)] if auth.protect_metrics else []

    @app.get("/metrics", dependencies=metrics_deps)
    async def metrics() -> dict[str, str]:
        return {"route": "metrics"}

    return app


@pytest.fixture
def make_app() -> Callable[[Authenticator], FastAPI]:
    """Build a small FastAPI app protected by an authenticator."""
    return _make_app


@pytest.fixture
def put_parameter(aws_env: Any) -> Callable[..., None]:
    """Write an SSM parameter on the moto server (the write itself is not watched: see test_setup_not_watched)."""
    import boto3

    def put(
        name: str, value: str, *, kind: Literal["SecureString", "String"] = "SecureString", region: str | None = None
    ) -> None:
        with test_setup_not_watched():
            client = boto3.session.Session().client("ssm", region_name=region)
            client.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)

    return put
