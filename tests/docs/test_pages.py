"""Facts the prose states that the code can check: exported names, earlier import paths, CLI options."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import modalkit

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_names_the_modalkit_reference_page_says_are_reexported_are() -> None:
    intro = _page("reference/modalkit.md").split(":::", 1)[0]
    reexported = intro.split("(`modalkit.inference_pipeline`", 1)[0]
    named = [n for n in re.findall(r"`([A-Za-z_]+)`", reexported) if n not in ("modalkit", "__all__")]
    assert named
    assert [n for n in named if n not in modalkit.__all__] == []


def test_the_earlier_import_paths_export_what_the_migration_page_lists() -> None:
    rows = re.findall(
        r"^\| `(modalkit\.\w+)`(?: \(([^)]*)\))? \| `(\w+)` \|", _page("migrating/from-modalkit.md"), re.M
    )
    assert {module for module, _, _ in rows} == {
        "modalkit.inference_pipeline",
        "modalkit.iomodel",
        "modalkit.modal_config",
        "modalkit.modal_service",
        "modalkit.settings",
        "modalkit.task_queue",
        "modalkit.exceptions",
        "modalkit.fast_api",
    }
    for module_name, names, provider in rows:
        module = importlib.import_module(module_name)
        for name in re.findall(r"`(\w+)`", names):
            assert hasattr(module, name), f"{module_name} has no {name}"
            if name[0].isupper() and name != "Settings":
                source = importlib.import_module(provider)
                assert getattr(module, name) is getattr(source, name), f"{module_name}.{name} is not {provider}'s"


@pytest.mark.parametrize(("page", "command"), [("serving.md", ["serve", "--help"]), ("modal.md", ["deploy", "--help"])])
def test_documented_cli_options_exist(page: str, command: list[str]) -> None:
    text = _page(page)
    table = text[text.index("| option |") :].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `(--[a-z-]+)", table, re.M)
    assert documented
    helptext = subprocess.run(
        [sys.executable, "-m", "modalkit", *command], capture_output=True, text=True, check=True
    ).stdout
    assert [option for option in documented if option not in helptext] == []


def test_benchmark_rows_quoted_in_the_docs_are_the_benchmarks_own() -> None:
    readme = (DOCS.parent / "benchmarks" / "README.md").read_text(encoding="utf-8")
    quoted = 0
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for block in text.split("<!-- benchmark-rows:")[1:]:
            rows = [line for line in block.split("\n\n", 2)[1].splitlines() if line.startswith("|")]
            assert rows, f"{page.name}: a benchmark-rows marker with no table after it"
            missing = [row for row in rows if row not in readme]
            assert missing == [], f"{page.name}: rows no longer in benchmarks/README.md (update them): {missing}"
            quoted += 1
    assert quoted >= 1
