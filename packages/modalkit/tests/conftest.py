"""Fixtures for the modalkit meta-package tests: app files imported as Modal imports them, offline."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from modalkit import load_app_file

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
APPS = TESTS / "apps"

_counter = itertools.count()

LoadApp = Callable[..., ModuleType]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Modal signals removed or deprecated arguments with modal.exception.DeprecationError (a UserWarning):
    # make it an error in every test, whatever the root configuration says.
    # The hook sees the whole session's items: mark only this package's tests.
    for item in items:
        if item.path.is_relative_to(TESTS):
            item.add_marker(pytest.mark.filterwarnings("error::modal.exception.DeprecationError"))


@pytest.fixture
def load_app(monkeypatch: pytest.MonkeyPatch) -> LoadApp:
    """Import an app file under a fresh module name with ``MODALKIT_CONFIG`` pointing at ``config``."""

    def load(app: str | Path, config: str | Path, *, postfix: str | None = None) -> ModuleType:
        monkeypatch.setenv("MODALKIT_CONFIG", str(config))
        if postfix is None:
            monkeypatch.delenv("MODALKIT_APP_POSTFIX", raising=False)
        else:
            monkeypatch.setenv("MODALKIT_APP_POSTFIX", postfix)
        path = Path(app) if Path(app).is_absolute() else APPS / app
        return load_app_file(path, module_name=f"modalkit_test_app_{next(_counter)}")

    return load
