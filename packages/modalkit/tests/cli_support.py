"""Running the real ``modalkit`` command in subprocesses; servers come from `modalkit.testing`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from modalkit import testing
from modalkit.testing import ModalkitServer


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process, without this test run's modalkit and uv project settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MODALKIT_") and k not in {"UV_PROJECT_ENVIRONMENT", "VIRTUAL_ENV", "PYTEST_ADDOPTS"}
    }
    env.update(extra or {})
    return env


def modalkit(
    *args: str, cwd: str | Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m modalkit ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "modalkit", *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def serving(
    args: Sequence[str], *, cwd: str | Path, env: Mapping[str, str] | None = None, startup: float = 60
) -> Iterator[ModalkitServer]:
    """``modalkit serve ARGS`` on a free loopback port, ready, stopped by PID; without this run's MODALKIT_* vars."""
    app, *rest = args
    with testing.serving(app, rest, cwd=cwd, base_env=clean_env(), env=env, startup_timeout=startup) as server:
        yield server
