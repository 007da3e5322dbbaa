"""Fixtures for the upstream_style example: its files imported under names of their own."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent


@pytest.fixture
def upstream_app(monkeypatch: pytest.MonkeyPatch, load_file: Callable[[str, Path], Any]) -> Any:
    """app.py imported as Modal imports it, reading the example's modalkit.yaml."""
    monkeypatch.setenv("MODALKIT_CONFIG", str(EXAMPLE / "modalkit.yaml"))
    monkeypatch.delenv("MODALKIT_APP_POSTFIX", raising=False)
    monkeypatch.delitem(sys.modules, "upstream_style_app", raising=False)
    return load_file("upstream_style_app", EXAMPLE / "app.py")


@pytest.fixture(scope="session")
def client_script(load_file: Callable[[str, Path], Any]) -> Any:
    """client.py as a module (``call_api``, ``main``)."""
    return load_file("upstream_style_client", EXAMPLE / "client.py")
