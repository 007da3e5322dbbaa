"""Package boundaries: public names, version, and that importing does nothing (no logging setup, no modal)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import modalkit_serve
from modalkit_serve import errors


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(modalkit_serve) if not name.startswith("_")}
    public -= {"annotations", "cli", "testing"}  # submodules imported by the tests themselves
    assert set(modalkit_serve.__all__) - {"__version__"} == public
    for name in modalkit_serve.__all__:
        assert hasattr(modalkit_serve, name)


def test_version_comes_from_the_installed_metadata() -> None:
    assert modalkit_serve.__version__ == version("modalkit-serve")


def test_every_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ServeError)


def test_import_configures_nothing_and_loads_no_modal() -> None:
    code = (
        "import logging, sys, threading\n"
        "before = threading.active_count()\n"
        "import modalkit_serve, modalkit_serve.cli, modalkit_serve.testing\n"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers\n"
        "assert threading.active_count() == before\n"
        "print(','.join(b for b in ['modal', 'boto3', 'taskiq'] if b in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
