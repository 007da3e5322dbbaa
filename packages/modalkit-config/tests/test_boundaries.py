"""Package boundaries: public names, version, dependency budget, nothing heavy at import."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

import modalkit_config


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(modalkit_config) if not name.startswith("_")}
    public -= {"annotations", "errors"}
    assert set(modalkit_config.__all__) - {"__version__"} == public
    for name in modalkit_config.__all__:
        assert hasattr(modalkit_config, name)


def test_version_comes_from_the_installed_metadata() -> None:
    assert modalkit_config.__version__ == version("modalkit-config")


def test_depends_on_pydantic_pydantic_settings_and_yaml_only() -> None:
    names = {re.split(r"[\s;\[<>=!~]", r, maxsplit=1)[0] for r in requires("modalkit-config") or []}
    assert names == {"pydantic", "pydantic-settings", "pyyaml"}


def test_import_loads_no_heavy_or_optional_library_and_reads_nothing(tmp_path: Path) -> None:
    # Run in an empty directory holding a broken modalkit.yaml and .env: an import that read them would fail.
    code = (
        "import sys, modalkit_config, modalkit_config.cli\n"
        "banned = ['fastapi', 'modal', 'boto3', 'botocore', 'taskiq', 'starlette', 'uvicorn', 'modalkit']\n"
        "print(','.join(b for b in banned if b in sys.modules))\n"
    )
    cwd = str(tmp_path)
    (tmp_path / "modalkit.yaml").write_text("app_settings: [\n")
    (tmp_path / ".env").write_text("MODALKIT_APP_SETTINGS__APP_PREFIX=[\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd)
    assert out.stdout.strip() == ""
    assert out.stderr == ""
