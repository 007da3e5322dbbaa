"""Package boundaries: public names and the dependency budget (pydantic only)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires, version

import modalkit_pipeline


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(modalkit_pipeline) if not name.startswith("_")}
    public -= {"annotations", "testing"}
    assert set(modalkit_pipeline.__all__) - {"__version__"} == public
    for name in modalkit_pipeline.__all__:
        assert hasattr(modalkit_pipeline, name)


def test_version_comes_from_the_installed_metadata() -> None:
    assert modalkit_pipeline.__version__ == version("modalkit-pipeline")


def test_depends_on_pydantic_only() -> None:
    names = {re.split(r"[\s;\[<>=!~]", r, maxsplit=1)[0] for r in requires("modalkit-pipeline") or []}
    assert names == {"pydantic"}


def test_import_loads_no_heavy_or_optional_library() -> None:
    code = (
        "import sys, modalkit_pipeline, modalkit_pipeline.testing\n"
        "banned = ['fastapi', 'modal', 'boto3', 'botocore', 'taskiq', 'yaml', 'starlette', 'uvicorn']\n"
        "print(','.join(b for b in banned if b in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
