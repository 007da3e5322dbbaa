"""Fixtures for the digits example: its modules on ``sys.path``, its scripts as modules, trained artefacts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import digits_model  # noqa: E402 (needs the path above)


@pytest.fixture
def import_app(monkeypatch: pytest.MonkeyPatch, load_file: Callable[[str, Path], Any]) -> Callable[[], Any]:
    """Import app.py as Modal does (reading the example's modalkit.yaml), under a name of its own."""

    def load() -> Any:
        monkeypatch.setenv("MODALKIT_CONFIG", str(EXAMPLE / "modalkit.yaml"))
        monkeypatch.delitem(sys.modules, "digits_example_app", raising=False)
        return load_file("digits_example_app", EXAMPLE / "app.py")

    return load


@pytest.fixture(scope="session")
def train_script(load_file: Callable[[str, Path], Any]) -> Any:
    """The example's ``train.py`` as a module (its ``main(argv)``)."""
    return load_file("digits_example_train", EXAMPLE / "train.py")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with both recipes trained once per session: ``v1.joblib`` and ``v2.joblib`` (copy, don't edit)."""
    folder = tmp_path_factory.mktemp("digits-artefacts")
    for recipe in ("v1", "v2"):
        digits_model.save_artifact(digits_model.train(recipe), folder / f"{recipe}.joblib")
    return folder
