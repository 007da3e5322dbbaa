"""`modal deploy examples/<each>/app.py`, typed from the repo root, gets as far as Modal's "token missing" step.

The real `modal` CLI runs in a subprocess with an empty HOME and no token, so it imports the app file (reading
its modalkit.yaml, building every decorator's arguments) and stops when `_Client.from_env` finds no credentials.
Anything that fails before that (a config not found, a rejected argument) shows up as a different error.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(
    p.parent.name for p in (ROOT / "examples").glob("*/app.py") if not (p.parent / "pyproject.toml").exists()
)


# The examples' own model libraries are root dev dependencies: the package's isolated venv lacks them.
MODEL_LIBRARIES = {"sentiment": "vaderSentiment", "digits": "joblib", "realtime_analytics": "sklearn"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_modal_deploy_from_the_repo_root_reaches_the_token_step(example: str, tmp_path: Path) -> None:
    library = MODEL_LIBRARIES.get(example)
    if library is not None and importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} (the {example} example's model library) is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "MODALKIT_"))}
    env.update(HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / ".modal.toml"))
    cmd = [sys.executable, "-m", "modal", "deploy", f"examples/{example}/app.py"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert "Token missing" in output, output
    assert "Traceback" not in output, output
