"""config_files: the files load_settings would read, for tools that ship them (modalkit deploy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modalkit_config import config_files


def test_explicit_paths_win() -> None:
    assert config_files(["a.yaml", "b.yaml"], env={"MODALKIT_CONFIG": "c.yaml"}, env_file=None) == [
        Path("a.yaml"),
        Path("b.yaml"),
    ]


def test_modalkit_config_lists_overlays() -> None:
    assert config_files(env={"MODALKIT_CONFIG": "base.yaml, prod.yaml"}, env_file=None) == [
        Path("base.yaml"),
        Path("prod.yaml"),
    ]


def test_default_is_modalkit_yaml() -> None:
    assert config_files(env={}, env_file=None) == [Path("modalkit.yaml")]


def test_dotenv_can_name_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MODALKIT_CONFIG=from-dotenv.yaml\n")
    assert config_files(env={}) == [Path("from-dotenv.yaml")]
    # the process environment wins over .env, as in load_settings
    assert config_files(env={"MODALKIT_CONFIG": "from-env.yaml"}) == [Path("from-env.yaml")]
