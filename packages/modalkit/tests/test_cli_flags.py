"""`modalkit --version`, `--config` errors that name `--config`, and `--workers` (issue 23 item 5)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from .cli_support import clean_env, modalkit
from .conftest import APPS

DISTRIBUTIONS = (
    "modalkit",
    "modalkit-pipeline",
    "modalkit-config",
    "modalkit-queue",
    "modalkit-auth",
    "modalkit-serve",
)


def test_version_lists_every_package() -> None:
    result = modalkit("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for dist in DISTRIBUTIONS:
        assert f"{dist} {version(dist)}" in lines, result.stdout
    assert f"modal {version('modal')}" in lines
    assert any(line.startswith("python ") for line in lines)


@pytest.mark.parametrize("command", ["serve", "deploy"])
def test_a_missing_config_names_the_flag_not_the_variable(tmp_path: Path, command: str) -> None:
    args = [command, str(APPS / "modal_translation_app.py"), "--config", "missing.yaml"]
    result = modalkit(*args, *(["--dry-run"] if command == "deploy" else []), cwd=tmp_path)
    assert result.returncode == 2
    assert "--config" in result.stderr
    assert "missing.yaml" in result.stderr
    assert "MODALKIT_CONFIG" not in result.stderr
    assert "Traceback" not in result.stderr


def test_modalkit_serve_names_the_flag_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modalkit_serve.cli", str(APPS / "modal_translation_app.py"), "--config", "nope.yaml"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "--config" in result.stderr
    assert "nope.yaml" in result.stderr
    assert "MODALKIT_CONFIG" not in result.stderr


def test_workers_above_one_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = modalkit("serve", str(APPS / "modal_translation_app.py"), "--workers", "4", cwd=tmp_path)
    assert result.returncode == 2
    assert "--workers" in result.stderr
    assert "serving.md" in result.stderr
    assert "Traceback" not in result.stderr
