"""Importing a user's app file the way ``modal deploy app.py`` does, for ``modalkit serve`` and tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from modalkit.errors import AppFileError

__all__ = ["config_next_to", "load_app_file"]


def config_next_to(app_file: str | Path) -> Path | None:
    """The ``modalkit.yaml`` beside an app file, if there is one."""
    candidate = Path(app_file).resolve().parent / "modalkit.yaml"
    return candidate if candidate.is_file() else None


def load_app_file(path: str | Path, *, module_name: str | None = None) -> ModuleType:
    """Import ``path`` as a module, with its folder first on ``sys.path`` (as Modal does in the container).

    Args:
        path: The app file (``app.py``).
        module_name: Name to register the module under; defaults to the file's stem, as Modal names it.

    Raises:
        AppFileError: the file does not exist or is not a Python file. Errors raised while the file runs
            (a bad configuration, a syntax error) propagate unchanged, so the caller can report them.
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise AppFileError(f"{path}: no such file (give the path of your app.py)")
    if file.suffix != ".py":
        raise AppFileError(f"{path}: not a Python file (give the path of your app.py)")
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = module_name or file.stem
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - only for exotic loaders
        raise AppFileError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: pickling, dataclasses and Modal look classes up through sys.modules.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
