"""The modalkit-config command, run for real in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from modalkit_config import json_schema

Write = Callable[[str, str], Path]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modalkit_config.cli", *args], capture_output=True, text=True, cwd=cwd, check=False
    )


THREE_MISTAKES = """
app_settings:
  app_prefix: demo
  batch_config:
    max_batch_size: 5000
  deployment_config:
    gpu: T4
    scaledown_windows: 60
model_settings:
  model_entries:
    m:
      path: m.pt
  local_model_repository_folder: 7
"""


def test_validate_prints_three_errors_with_lines_and_key_paths(write: Write, tmp_path: Path) -> None:
    write("f.yaml", THREE_MISTAKES)
    result = _cli("validate", "f.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "f.yaml:4: app_settings.batch_config.max_batch_size: must be <= 1000 (got 5000)",
        "f.yaml:7: app_settings.deployment_config.scaledown_windows: unknown key 'scaledown_windows'; "
        "did you mean 'scaledown_window'?",
        "f.yaml:12: model_settings.local_model_repository_folder: expected a string (got 7, a number; "
        'quote it in YAML, e.g. "7")',
    ]
    assert result.stderr == "f.yaml: 3 errors\n"


def test_validate_ok_files_and_reports_each_file(write: Write, tmp_path: Path, fixtures_dir: Path) -> None:
    write("good.yaml", "app_settings: {app_prefix: a}\nmodel_settings: {model_entries: {m: {}}}\n")
    write(
        "bad.yaml",
        "app_settings: {app_prefix: a, batch_config: {wait_ms: -1}}\nmodel_settings: {model_entries: {m: {}}}\n",
    )
    ok = _cli("validate", "good.yaml", cwd=tmp_path)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "good.yaml: ok\n", "")
    both = _cli("validate", "good.yaml", "bad.yaml", cwd=tmp_path)
    assert both.returncode == 1
    assert both.stdout.splitlines() == [
        "good.yaml: ok",
        "bad.yaml:1: app_settings.batch_config.wait_ms: must be >= 0 (got -1)",
    ]


def test_validate_shows_deprecations_as_warnings_but_passes(fixtures_dir: Path) -> None:
    path = fixtures_dir / "modalkit.yaml"
    result = _cli("validate", str(path))
    assert result.returncode == 0
    assert result.stdout == f"{path}: ok\n"
    assert result.stderr.splitlines() == [
        f"{path}:9: warning: app_settings.auth_config.auth_header is deprecated; "
        "use app_settings.auth_config.header instead",
        f"{path}:18: warning: app_settings.deployment_config.concurrency_limit is deprecated; "
        "use app_settings.deployment_config.max_containers instead",
        f"{path}:19: warning: app_settings.deployment_config.container_idle_timeout is deprecated; "
        "use app_settings.deployment_config.scaledown_window instead",
    ]


def test_validate_merged_overlays(write: Write, tmp_path: Path) -> None:
    write("base.yaml", "app_settings: {app_prefix: a}\nmodel_settings: {model_entries: {m: {}}}\n")
    write("prod.yaml", "app_settings:\n  batch_config: {max_batch_size: 64}\n")
    alone = _cli("validate", "base.yaml", "prod.yaml", cwd=tmp_path)
    assert alone.returncode == 1  # prod.yaml on its own lacks the required keys
    merged = _cli("validate", "--merge", "base.yaml", "prod.yaml", cwd=tmp_path)
    assert (merged.returncode, merged.stdout) == (0, "base.yaml + prod.yaml: ok\n")


def test_validate_reports_missing_and_broken_files(write: Write, tmp_path: Path) -> None:
    write("broken.yaml", "app_settings:\n  app_prefix: [\n")
    result = _cli("validate", "missing.yaml", "broken.yaml", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "missing.yaml: config file not found"
    assert lines[1].startswith("broken.yaml:3: invalid YAML: ")
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert _cli(cwd=tmp_path).returncode == 2
    assert _cli("validate", cwd=tmp_path).returncode == 2
    result = _cli("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_schema_prints_the_json_schema() -> None:
    result = _cli("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json_schema()


def test_schema_check_compares_with_the_shipped_file(tmp_path: Path) -> None:
    assert _cli("schema", "--check").returncode == 0
    stale = tmp_path / "stale.json"
    stale.write_text("{}\n")
    result = _cli("schema", "--check", "--path", str(stale))
    assert result.returncode == 1
    assert "out of date" in result.stderr
    written = _cli("schema", "--write", "--path", str(stale))
    assert written.returncode == 0
    assert json.loads(stale.read_text()) == json_schema()


def test_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "modalkit-config"]
    assert script.value == "modalkit_config.cli:main"


def test_validate_applies_the_environment_unless_told_not_to(write: Write, tmp_path: Path) -> None:
    # What load_settings() (and so `modalkit serve`) would load: the files, then ./.env, then the environment.
    write("m.yaml", "app_settings: {app_prefix: a}\nmodel_settings: {model_entries: {m: {}}}\n")
    write(".env", "MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS=-3\n")
    for args in (["m.yaml"], ["--env", "m.yaml"]):
        with_env = _cli("validate", *args, cwd=tmp_path)
        assert with_env.returncode == 1
        assert with_env.stdout == ".env:1: app_settings.batch_config.wait_ms: must be >= 0 (got -3)\n"
    assert _cli("validate", "--no-env", "m.yaml", cwd=tmp_path).returncode == 0


def test_python_dash_m_package_runs_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modalkit_config", "schema"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "modalkit.yaml"
