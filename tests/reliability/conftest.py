"""Fixtures of the reliability suite: the shared servers and the figures report.

The suite starts real servers (``modalkit serve`` in their own process groups, on free loopback ports) and stops
them by PID. Its figures (requests, errors, jobs accepted/delivered/dead-lettered, memory) are written to the
JSON file named by ``MODALKIT_RELIABILITY_REPORT`` (default: the session's temporary folder) and summarised at
the end of the run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# The helpers are imported as `tests.reliability.reliability_support` (the name mypy gives them too); pytest's
# importlib mode does not put the repository root on sys.path, so add it.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reliability.reliability_support import (  # noqa: E402  (needs the path above)
    API_KEY,
    API_KEY_ENV,
    AWS_ENV,
    LIMITS,
    OTHER_API_KEY,
    REPORT,
    SENTIMENT_APP,
    SENTIMENT_CONFIG,
    Report,
    redis_command,
    start_server,
    write_overlay,
)

from modalkit_serve.testing import ServedProcess  # noqa: E402

if TYPE_CHECKING:  # at run time another conftest module may stand under that name
    from conftest import InProcessMoto as Endpoint

REPORT_ENV = "MODALKIT_RELIABILITY_REPORT"


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    """Where tests record their figures; written to JSON when the session ends."""
    yield REPORT
    target = os.environ.get(REPORT_ENV)
    path = Path(target) if target else tmp_path_factory.getbasetemp() / "reliability-figures.json"
    REPORT.write(path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures recorded during the run."""
    if not REPORT.scenarios:
        return
    terminalreporter.section("reliability figures")
    for name, figures in REPORT.scenarios.items():
        shown = ", ".join(f"{k}={v}" for k, v in figures.items() if k != "tried")
        terminalreporter.write_line(f"{name}: {shown}")
    if REPORT.path is not None:
        terminalreporter.write_line(f"written to {REPORT.path}")


@pytest.fixture(scope="session")
def sentiment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    """The sentiment example (``modalkit serve examples/sentiment/app.py``) with small limits, for the session."""
    logs = tmp_path_factory.mktemp("sentiment-limits")
    overlay = write_overlay(logs / "limits.yaml", LIMITS)
    server = start_server(SENTIMENT_APP, SENTIMENT_CONFIG, logs, overlay)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sentiment_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    """The same service guarding its predict and job routes with two valid API keys (``api_key_env``)."""
    logs = tmp_path_factory.mktemp("sentiment-auth")
    limits = write_overlay(logs / "limits.yaml", LIMITS)
    auth = write_overlay(logs / "auth.yaml", f"app_settings:\n  auth_config:\n    api_key_env: {API_KEY_ENV}\n")
    server = start_server(
        SENTIMENT_APP, SENTIMENT_CONFIG, logs, limits, auth, env={API_KEY_ENV: f"{API_KEY},{OTHER_API_KEY}"}
    )
    yield server
    server.stop()


@pytest.fixture
def persistent_redis(redis_server: Any) -> Iterator[Any]:
    """The test Redis, snapshotting on shutdown like a production one, so a restart keeps delivered results."""
    directory = redis_command(redis_server.port, "CONFIG", "GET", "dir").split(b"\r\n")[4].decode()
    redis_command(redis_server.port, "CONFIG", "SET", "save", "3600 1")
    yield redis_server
    if not redis_server.is_up():
        redis_server.start()
    redis_command(redis_server.port, "CONFIG", "SET", "save", "")
    redis_command(redis_server.port, "FLUSHALL")
    (Path(directory) / "dump.rdb").unlink(missing_ok=True)


@pytest.fixture
def endpoint(in_process_moto: Endpoint, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    """An in-process moto endpoint (not started), with boto3 in this process pointed at it."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", in_process_moto.url)
    return in_process_moto
