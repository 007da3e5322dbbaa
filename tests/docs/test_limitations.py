"""docs/limitations.md stays true: every entry names a test that pins it, and every test it names exists."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "limitations.md"


def _entries() -> dict[str, str]:
    sections = re.split(r"^## ", PAGE.read_text(encoding="utf-8"), flags=re.M)[1:]
    return {s.splitlines()[0]: s for s in sections}


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_limitation_names_a_test_that_exists() -> None:
    entries = _entries()
    assert len(entries) >= 5
    for title, text in entries.items():
        pins = re.findall(r"`([\w/.-]+\.py)::(\w+)`", text.split("Pinned by", 1)[-1]) if "Pinned by" in text else []
        assert pins, f"docs/limitations.md: '{title}' names no test that pins it"
        for file, name in pins:
            path = ROOT / file
            assert path.is_file(), f"docs/limitations.md: '{title}': {file} does not exist"
            assert name in _test_names(path), f"docs/limitations.md: '{title}': {file} has no test {name}"


def test_there_is_no_container_build_outside_modal() -> None:
    # When a `modalkit build` or a Dockerfile arrives, the page's "No container image outside Modal" goes.
    assert not (ROOT / "Dockerfile").exists()
    done = subprocess.run(
        [sys.executable, "-m", "modalkit", "build", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "build" in (done.stderr + done.stdout)
