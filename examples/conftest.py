"""Fixtures every example's tests share: importing an example's file by path, and `modalkit serve` as a process.

The root conftest gives the SQS (moto) and Redis servers; each example's own conftest adds its fixtures.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modalkit.testing import serving as _serving

# Their own uv projects with onnxruntime, tested by examples/<name>/ci.sh, not by the workspace's pytest.
collect_ignore = ["embeddings", "ocr", "llm"]

LoadFile = Callable[[str, Path], Any]


def _load_file(name: str, path: Path) -> Any:
    """Import a file once, under a module name of our choosing (two examples' same-named files cannot collide)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def load_file() -> LoadFile:
    """``load_file(name, path)``: import ``path`` as module ``name``, once (delete it from sys.modules to reload)."""
    return _load_file


@pytest.fixture(scope="session")
def serving() -> Callable[..., Any]:
    """`modalkit.testing.serving`: ``modalkit serve APP`` on a free loopback port, ready, stopped by PID."""
    return _serving
