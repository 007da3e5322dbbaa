"""Fixtures for the digits example: its modules on ``sys.path``, trained artefacts, and `modalkit serve`."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent
WORKSPACE = EXAMPLE.parents[1]
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import digits_model  # noqa: E402 (needs the path above)


def _load(name: str, path: Path) -> Any:
    """Import a file under a name of our choosing, once (two examples' same-named files cannot collide)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def serving() -> Callable[..., Any]:
    """``serving(args, cwd=..., env=...)``: `modalkit serve` on a free loopback port, stopped by PID.

    The modalkit package's CLI tests own this helper; the examples reuse it.
    """
    support = _load("modalkit_cli_support", WORKSPACE / "packages" / "modalkit" / "tests" / "cli_support.py")
    serve: Callable[..., Any] = support.serving
    return serve


@pytest.fixture
def import_app(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """Import app.py as Modal does (reading the example's modalkit.yaml), under a name of its own."""

    def load() -> Any:
        monkeypatch.setenv("MODALKIT_CONFIG", str(EXAMPLE / "modalkit.yaml"))
        monkeypatch.delitem(sys.modules, "digits_example_app", raising=False)
        return _load("digits_example_app", EXAMPLE / "app.py")

    return load


@pytest.fixture(scope="session")
def train_script() -> Any:
    """The example's ``train.py`` as a module (its ``main(argv)``)."""
    return _load("digits_example_train", EXAMPLE / "train.py")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with both recipes trained once per session: ``v1.joblib`` and ``v2.joblib`` (copy, don't edit)."""
    folder = tmp_path_factory.mktemp("digits-artefacts")
    for recipe in ("v1", "v2"):
        digits_model.save_artifact(digits_model.train(recipe), folder / f"{recipe}.joblib")
    return folder
