"""Fixtures for the upstream_style example: its files imported under names of their own, and `modalkit serve`."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent
WORKSPACE = EXAMPLE.parents[1]


def _load(name: str, path: Path) -> Any:
    """Import a file under a name of our choosing (two examples' ``app.py`` files cannot collide)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def serving() -> Callable[..., Any]:
    """``serving(args, cwd=..., env=...)``: `modalkit serve` on a free loopback port, stopped by PID.

    The modalkit package's CLI tests own this helper; the examples reuse it.
    """
    if "modalkit_cli_support" not in sys.modules:
        _load("modalkit_cli_support", WORKSPACE / "packages" / "modalkit" / "tests" / "cli_support.py")
    serve: Callable[..., Any] = sys.modules["modalkit_cli_support"].serving
    return serve


@pytest.fixture
def upstream_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    """app.py imported as Modal imports it, reading the example's modalkit.yaml."""
    monkeypatch.setenv("MODALKIT_CONFIG", str(EXAMPLE / "modalkit.yaml"))
    monkeypatch.delenv("MODALKIT_APP_POSTFIX", raising=False)
    monkeypatch.delitem(sys.modules, "upstream_style_app", raising=False)
    return _load("upstream_style_app", EXAMPLE / "app.py")


@pytest.fixture(scope="session")
def client_script() -> Any:
    """client.py as a module (``call_api``, ``main``)."""
    return _load("upstream_style_client", EXAMPLE / "client.py")
