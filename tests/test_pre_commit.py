"""The pre-commit hooks run offline through the workspace's own tools, and the README says how to run them."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_hooks_are_local_uv_commands_for_ruff_and_the_lock() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {repo["repo"] for repo in config["repos"]} == {"local"}  # nothing to download
    assert {hook["id"] for hook in hooks} == {"ruff-check", "ruff-format", "uv-lock"}
    assert all(hook["entry"].startswith("uv ") and hook["language"] == "system" for hook in hooks)
    entries = {hook["id"]: hook["entry"] for hook in hooks}
    assert "ruff check" in entries["ruff-check"]
    assert "ruff format" in entries["ruff-format"]
    assert "--check" in entries["ruff-format"]
    assert entries["uv-lock"] == "uv lock --check"


def test_readme_development_section_names_the_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "uv run pre-commit run -a" in readme.split("## Development", 1)[1]
