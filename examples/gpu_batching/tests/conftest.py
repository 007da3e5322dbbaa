"""Fixtures for the gpu_batching example: its modules on ``sys.path`` and its sweep script as a module."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))


@pytest.fixture(scope="session")
def sweep(load_file: Callable[[str, Path], Any]) -> Any:
    """sweep.py, imported once under a name of its own."""
    return load_file("gpu_batching_sweep", EXAMPLE / "sweep.py")
