"""Fixtures for the async_queues example: its modules, its consumer script, and `modalkit serve`.

The SQS and Redis servers come from the root conftest (``aws_env``/``moto_server``, ``redis_server``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent
WORKSPACE = EXAMPLE.parents[1]
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))


def _load(name: str, path: Path) -> Any:
    """Import a file once, under a name of our choosing (two examples' same-named files cannot collide)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def serving() -> Callable[..., Any]:
    """``serving(args, cwd=..., env=...)``: `modalkit serve` on a free loopback port, stopped by PID.

    The modalkit package's CLI tests own this helper; the examples reuse it.
    """
    support = _load("modalkit_cli_support", WORKSPACE / "packages" / "modalkit" / "tests" / "cli_support.py")
    serve: Callable[..., Any] = support.serving
    return serve


@pytest.fixture(scope="session")
def consumer() -> Any:
    """consumer.py as a module."""
    return _load("async_queues_consumer", EXAMPLE / "consumer.py")
