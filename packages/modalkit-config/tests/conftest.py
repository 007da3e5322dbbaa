"""Shared fixtures: a minimal valid configuration and a helper that writes files."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

MINIMAL: dict[str, Any] = {
    "app_settings": {"app_prefix": "demo"},
    "model_settings": {"model_entries": {"m": {}}},
}


@pytest.fixture
def minimal() -> dict[str, Any]:
    """A fresh copy of the smallest valid configuration."""
    return copy.deepcopy(MINIMAL)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a dedented text file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
