"""Fixtures for the gpu_batching example: its modules on ``sys.path`` and its sweep script as a module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))


@pytest.fixture(scope="session")
def sweep() -> Any:
    """sweep.py, imported once under a name of its own."""
    name = "gpu_batching_sweep"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE / "sweep.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
