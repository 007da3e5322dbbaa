"""Fixtures for the async_queues example: its modules, and its consumer script.

The SQS and Redis servers come from the root conftest (``aws_env``/``moto_server``, ``redis_server``),
`serving` from examples/conftest.py.
"""

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
def consumer(load_file: Callable[[str, Path], Any]) -> Any:
    """consumer.py as a module."""
    return load_file("async_queues_consumer", EXAMPLE / "consumer.py")
