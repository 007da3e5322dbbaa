"""Fixtures for the real-time analytics example: its modules on sys.path, and a real `taskiq worker` process.

The Redis server comes from the root conftest (``redis_server``), `serving` from examples/conftest.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))
