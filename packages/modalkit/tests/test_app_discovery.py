"""How `modalkit serve` finds the service in an app file (in-process; test_cli runs the real command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modalkit._deploy import DeployPlan, run_deploy
from modalkit._serve import load_app_service
from modalkit.errors import AppFileError

from .cli_support import clean_env
from .conftest import APPS, FIXTURES


@pytest.fixture(autouse=True)
def _config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_CONFIG", str(FIXTURES / "queue.yaml"))


def test_the_web_function_names_the_class_and_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_CONFIG", str(FIXTURES / "translation.yaml"))
    spec = load_app_service(APPS / "modal_translation_app.py")
    assert spec.pipeline_cls.__name__ == "TranslationModel"
    assert spec.input_model is not None
    assert spec.input_model.__name__ == "TextInput"
    assert spec.output_model is not None
    assert spec.output_model.__name__ == "TextOutput"
    assert spec.settings is not None
    assert spec.settings.app_settings.app_prefix == "translation"
    assert spec.source == (APPS / "modal_translation_app.py").resolve()


def test_several_classes_without_a_web_function_need_a_choice() -> None:
    with pytest.raises(AppFileError, match=r"several \(EarlierQueueApp, QueueApp, SlowQueueApp\).*--service"):
        load_app_service(APPS / "modal_queue_app.py")
    spec = load_app_service(APPS / "modal_queue_app.py", service="QueueApp")
    assert spec.pipeline_cls.__name__ == "TranslationModel"
    with pytest.raises(
        AppFileError, match=r"no ModalService class named 'Nope' \(found: EarlierQueueApp, QueueApp, SlowQueueApp\)"
    ):
        load_app_service(APPS / "modal_queue_app.py", service="Nope")


def test_a_service_spec_file_is_served_as_modalkit_serve_would(tmp_path: Path) -> None:
    app = tmp_path / "spec_app.py"
    app.write_text(
        "from translation_pipeline import TranslationModel\n"
        "from modalkit_serve import ServiceSpec\n"
        "service = ServiceSpec(TranslationModel)\n"
    )
    (tmp_path / "translation_pipeline.py").write_text((APPS / "translation_pipeline.py").read_text())
    spec = load_app_service(app)
    assert spec.pipeline_cls.__name__ == "TranslationModel"


def test_the_reload_worker_finds_the_modal_service_through_serves_one_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    # modalkit plugs only its finder into modalkit-serve's loader; the reload worker (a fresh process) gets it,
    # and the chosen --service, from the environment the parent sets.
    from modalkit_serve._appfile import reload_environment, reload_factory
    from modalkit_serve._logging import shutdown_logging

    spec = load_app_service(APPS / "modal_queue_app.py", service="QueueApp")
    env = reload_environment(spec, "INFO")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        app = reload_factory()
    finally:
        shutdown_logging()
    assert app.state.runner.pipeline_cls.__name__ == "TranslationModel"
    assert app.state.runner.freeze_gc is True


def test_run_deploy_passes_the_config_and_postfix_to_the_command(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    code = (
        f"import os; open({str(out)!r}, 'w')"
        ".write(os.environ['MODALKIT_CONFIG'] + ' ' + os.environ['MODALKIT_APP_POSTFIX'])"
    )
    plan = DeployPlan(
        tmp_path / "app.py",
        "x-prod",
        [sys.executable, "-c", code],
        {"MODALKIT_CONFIG": "/c.yaml", "MODALKIT_APP_POSTFIX": "-prod"},
    )
    assert run_deploy(plan) == 0
    assert out.read_text() == "/c.yaml -prod"


def test_a_configured_modal_token_counts_as_logged_in(tmp_path: Path) -> None:
    empty = tmp_path / "modal.toml"
    empty.write_text("")
    code = "from modalkit._deploy import check_modal_login; check_modal_login(); print('ok')"
    env = clean_env({"MODAL_CONFIG_PATH": str(empty), "MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test"})
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr
    profile = tmp_path / "profile.toml"
    profile.write_text('[default]\ntoken_id = "ak-file"\ntoken_secret = "as-file"\nactive = true\n')
    env = clean_env({"MODAL_CONFIG_PATH": str(profile)})
    env.pop("MODAL_TOKEN_ID", None)
    env.pop("MODAL_TOKEN_SECRET", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr
