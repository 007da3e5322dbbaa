"""``modalkit deploy APP.py``: ``modal deploy`` with the configuration and the app postfix in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modalkit._config import APP_POSTFIX_ENV, CONFIG_ENV, DEFAULT_APP_POSTFIX
from modalkit.errors import AppFileError, ModalNotLoggedInError

__all__ = ["DeployPlan", "check_modal_login", "plan_deploy", "run_deploy"]


@dataclass
class DeployPlan:
    """What ``modalkit deploy`` runs: the command and the variables it adds to the environment."""

    app_file: Path
    app_name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def check_modal_login() -> None:
    """Refuse early, with the fix, when this machine has no Modal token (``modal deploy`` would fail later).

    Modal reads ``MODAL_TOKEN_ID``/``MODAL_TOKEN_SECRET`` or the active profile of ``~/.modal.toml``
    (``MODAL_CONFIG_PATH`` moves it); this asks Modal's own configuration reader, so both are honoured.

    Raises:
        ModalNotLoggedInError: no token id or secret is configured.
    """
    from modal.config import config

    if config.get("token_id") and config.get("token_secret"):
        return
    raise ModalNotLoggedInError(
        "Modal is not logged in on this machine: run `modal token new` (or `modal setup`), or set "
        "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET. `modalkit serve APP.py` serves the same app locally without one."
    )


def plan_deploy(
    app_file: str | os.PathLike[str], *, postfix: str | None = None, modal_args: Sequence[str] = ()
) -> DeployPlan:
    """Validate the configuration the app will read and build the ``modal deploy`` command.

    ``MODALKIT_CONFIG`` must already point at the configuration (the CLI sets it from ``--config`` or the
    modalkit.yaml beside the app file).

    Raises:
        AppFileError: the app file does not exist.
        ConfigError: the configuration is invalid (reported before anything is sent to Modal).
    """
    from modalkit_config import load_settings

    path = Path(app_file).resolve()
    if not path.is_file():
        raise AppFileError(f"{app_file}: no such file (give the path of your app.py)")
    settings = load_settings()
    chosen_postfix = postfix if postfix is not None else os.environ.get(APP_POSTFIX_ENV, DEFAULT_APP_POSTFIX)
    env = {APP_POSTFIX_ENV: chosen_postfix}
    if os.environ.get(CONFIG_ENV):
        env[CONFIG_ENV] = os.environ[CONFIG_ENV]
    command = [sys.executable, "-m", "modal", "deploy", str(path), *modal_args]
    return DeployPlan(path, settings.app_settings.app_prefix + chosen_postfix, command, env)


def run_deploy(plan: DeployPlan) -> int:
    """Run ``modal deploy`` (its output goes straight to the terminal); returns its exit status."""
    return subprocess.call(plan.command, env={**os.environ, **plan.env})
