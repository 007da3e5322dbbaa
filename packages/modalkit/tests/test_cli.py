"""The ``modalkit`` command, run as a real process."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modalkit_serve.testing import start_process_group, stop_process_group

from .cli_support import clean_env, modalkit, serving
from .conftest import APPS, FIXTURES

WORKSPACE = Path(__file__).resolve().parents[3]


# --- serve ---------------------------------------------------------------------------------------------------


def test_serve_runs_the_modal_app_file_locally(tmp_path: Path) -> None:
    args = [str(APPS / "modal_translation_app.py"), "--config", str(FIXTURES / "translation.yaml")]
    with serving(args, cwd=tmp_path) as server:
        status, body = server.post("/predict_sync?model_name=translation_model", {"text": "hello world"})
        assert (status, body["translation"]) == (200, "bonjour monde")
        status, body = server.post("/predict_sync?model_name=slang_model", {"text": "good night"})
        assert body["translation"] == "bon nuitée"
        status, results = server.post(
            "/predict_batch?model_name=translation_model", [{"text": "cat"}, {"text": "boom"}]
        )
        assert [r["status"] for r in results] == ["success", "error"]


def test_serve_finds_the_config_beside_the_app_file(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(APPS, project)
    shutil.copy(FIXTURES / "translation.yaml", project / "modalkit.yaml")
    # Started from another folder: the app's own modalkit.yaml is found anyway.
    with serving([str(project / "modal_translation_app.py")], cwd=tmp_path) as server:
        status, body = server.post("/predict_sync?model_name=translation_model", {"text": "cat"})
        assert (status, body["translation"]) == (200, "chat")


def test_serve_reports_a_missing_file_without_a_stack_trace(tmp_path: Path) -> None:
    result = modalkit("serve", "nope.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.py: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_port_file_with_reload(tmp_path: Path) -> None:
    app = str(APPS / "modal_translation_app.py")
    result = modalkit("serve", app, "--config", str(FIXTURES / "translation.yaml"), "--reload", "--port-file", "p")
    assert result.returncode == 2
    assert "--port-file does not work with --reload" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_points_at_the_failing_line_of_the_app_file(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import modal\n\nx = 1\ny = undefined_name + x\n")
    result = modalkit("serve", str(app), cwd=tmp_path)
    assert result.returncode == 2
    assert "NameError: name 'undefined_name' is not defined" in result.stderr
    assert f"{app}:4: y = undefined_name + x" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_reports_a_config_error_with_its_key_path(tmp_path: Path) -> None:
    shutil.copytree(APPS, tmp_path / "project")
    (tmp_path / "project" / "modalkit.yaml").write_text(
        "app_settings:\n  app_prefix: x\n  batch_config:\n    max_batch_size: 0\n"
        "model_settings:\n  model_entries: {m: {}}\n"
    )
    result = modalkit("serve", str(tmp_path / "project" / "modal_translation_app.py"), cwd=tmp_path)
    assert result.returncode == 2
    assert "app_settings.batch_config.max_batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_explains_missing_proxy_auth_variables(tmp_path: Path) -> None:
    config = tmp_path / "secure.yaml"
    config.write_text(
        "app_settings:\n  app_prefix: x\n  deployment_config: {secure: true}\n"
        "model_settings:\n  model_entries: {translation_model: {}}\n"
    )
    result = modalkit("serve", str(APPS / "modal_translation_app.py"), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "MODAL_PROXY_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_explains_a_file_without_a_service(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import modal\napp = modal.App('empty')\n")
    result = modalkit("serve", str(app), cwd=tmp_path)
    assert result.returncode == 2
    assert "defines no modalkit service" in result.stderr
    assert "ModalService" in result.stderr


def test_serve_reports_an_unknown_queue_backend_in_one_line(tmp_path: Path) -> None:
    shutil.copytree(APPS, tmp_path / "project")
    (tmp_path / "project" / "modalkit.yaml").write_text(
        "app_settings:\n  app_prefix: x\n  queue_config:\n    backend: memroy\n"
        "model_settings:\n  model_entries: {translation_model: {}}\n"
    )
    result = modalkit("serve", str(tmp_path / "project" / "modal_translation_app.py"), "--port", "0", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "memroy" in line]
    assert len(errors) == 1, result.stderr
    assert "queue_config.backend" in errors[0]
    assert "did you mean 'memory'?" in errors[0]


def test_serve_stops_with_status_3_when_a_model_fails_to_load(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text(
        "from typing import Any\n\nfrom pydantic import BaseModel\n\n"
        "from modalkit_pipeline import InferenceOutputModel, InferencePipeline\n"
        "from modalkit_serve import ServiceSpec\n\n\n"
        "class In(BaseModel):\n    text: str\n\n\nclass Out(InferenceOutputModel):\n    text: str\n\n\n"
        "class Broken(InferencePipeline[In, Out]):\n"
        "    def __init__(self, name: str, folder: str, common: dict[str, Any], **kwargs: Any) -> None:\n"
        "        raise FileNotFoundError(f'{folder}/weights.bin')\n\n"
        "    def preprocess(self, input_list: Any) -> Any: ...\n"
        "    def predict(self, input_list: Any, preprocessed_data: Any) -> Any: ...\n"
        "    def postprocess(self, input_list: Any, raw_output: Any) -> Any: ...\n\n\n"
        "service = ServiceSpec(Broken)\n"
    )
    (tmp_path / "modalkit.yaml").write_text("app_settings: {app_prefix: b}\nmodel_settings: {model_entries: {m: {}}}\n")
    result = modalkit("serve", str(tmp_path / "broken_app.py"), "--port", "0", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("modalkit: error: model m failed to load: FileNotFoundError: "), result.stderr
    assert "--keep-running" in last


# --- validate and schema ----------------------------------------------------------------------------------------


def test_validate_lists_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "modalkit.yaml"
    bad.write_text(
        "app_settings:\n  app_prefix: x\n  batch_config:\n    max_batch_size: 0\n    wait_ms: -1\n"
        "  deployment_config:\n    scaledown_window: 1\nmodel_settings:\n  model_entries: {m: {}}\n"
    )
    result = modalkit("validate", cwd=tmp_path)  # default: ./modalkit.yaml
    assert result.returncode == 1
    output = result.stdout + result.stderr
    for key in ("max_batch_size", "wait_ms", "scaledown_window"):
        assert f"app_settings.{key}" in output or key in output


def test_validate_accepts_a_good_file() -> None:
    result = modalkit("validate", str(FIXTURES / "full.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_knows_the_registered_queue_backends(tmp_path: Path) -> None:
    config = tmp_path / "modalkit.yaml"
    config.write_text(
        "app_settings:\n  app_prefix: x\n  queue_config:\n    backend: memroy\n"
        "model_settings:\n  model_entries: {m: {}}\n"
    )
    result = modalkit("validate", str(config), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{config}:4: app_settings.queue_config.backend: " in result.stdout
    assert "did you mean 'memory'?" in result.stdout
    # A name unlike any built-in may be registered by the app file, which validate does not run.
    config.write_text(config.read_text().replace("memroy", "rabbit"))
    result = modalkit("validate", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_checks_what_serve_would_load_unless_no_env(tmp_path: Path) -> None:
    config = tmp_path / "modalkit.yaml"
    config.write_text("app_settings:\n  app_prefix: x\nmodel_settings:\n  model_entries: {m: {}}\n")
    env = {"MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS": "abc"}
    result = modalkit("validate", str(config), cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("$MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS: app_settings.batch_config.wait_ms")
    result = modalkit("validate", "--no-env", str(config), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"{config}: ok\n"


def test_schema_prints_the_json_schema() -> None:
    result = modalkit("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "app_settings" in schema["properties"]


# --- deploy --------------------------------------------------------------------------------------------------


def _no_modal_login(tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "modal.toml"
    empty.write_text("")
    return {"MODAL_CONFIG_PATH": str(empty)}


def test_deploy_without_modal_login_says_how_to_log_in(tmp_path: Path) -> None:
    app = APPS / "modal_translation_app.py"
    env = _no_modal_login(tmp_path)
    result = modalkit("deploy", str(app), "--config", str(FIXTURES / "translation.yaml"), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "Modal is not logged in" in result.stderr
    assert "modal token new" in result.stderr
    assert "Traceback" not in result.stderr


def test_deploy_dry_run_shows_the_config_and_postfix_it_passes(tmp_path: Path) -> None:
    app = APPS / "modal_translation_app.py"
    config = FIXTURES / "translation.yaml"
    result = modalkit("deploy", str(app), "--config", str(config), "--postfix=-prod", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"MODALKIT_CONFIG={config}" in result.stdout
    assert "MODALKIT_APP_POSTFIX=-prod" in result.stdout
    assert f"-m modal deploy {app}" in result.stdout
    assert "app name: translation-prod" in result.stdout


def test_deploy_checks_the_config_before_anything_reaches_modal(tmp_path: Path) -> None:
    bad = tmp_path / "modalkit.yaml"
    bad.write_text("app_settings: {app_prefix: x, nope: 1}\nmodel_settings: {model_entries: {m: {}}}\n")
    app = tmp_path / "app.py"
    app.write_text("")
    result = modalkit("deploy", str(app), cwd=tmp_path, env=_no_modal_login(tmp_path))
    assert result.returncode == 2
    assert "app_settings.nope" in result.stderr


# --- init ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("init")
    result = modalkit("init", "demo", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "demo"


def test_init_creates_a_project_depending_on_this_checkout(demo: Path) -> None:
    expected = {
        "pyproject.toml",
        "README.md",
        ".gitignore",
        "modalkit.yaml",
        "demo_pipeline.py",
        "app.py",
        "tests/conftest.py",
        "tests/test_pipeline.py",
        "tests/test_service.py",
        "tests/test_modal_app.py",
    }
    assert {str(p.relative_to(demo)) for p in demo.rglob("*") if p.is_file()} == expected
    pyproject = (demo / "pyproject.toml").read_text()
    assert f'modalkit = {{ path = "{WORKSPACE / "packages" / "modalkit"}", editable = true }}' in pyproject
    assert modalkit("validate", str(demo / "modalkit.yaml")).returncode == 0


def test_init_project_tests_pass_with_this_interpreter(demo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=demo,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "7 passed" in result.stdout


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed (the README's prerequisite)")
def test_init_next_steps_work_as_printed_then_offline(tmp_path: Path) -> None:
    # What `modalkit init` tells the user to run, run as printed (on a fresh machine the first sync needs the
    # package index); then the README's promise that, once synced, `uv run --offline` needs no network.
    made = modalkit("init", "demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    steps = [line.split("#")[0].strip() for line in made.stdout.split("next:", 1)[1].splitlines()]
    steps = [step for step in steps if step]
    assert steps[:3] == ["cd demo", "uv sync", "uv run pytest"], made.stdout
    demo = tmp_path / "demo"

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command.split(), "-q", "-p", "no:cacheprovider"] if "pytest" in command else command.split(),
            cwd=demo,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    for step in steps[1:3]:
        result = run(step)
        assert result.returncode == 0, f"{step}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    assert "7 passed" in result.stdout
    readme = (demo / "README.md").read_text()
    assert "uv run --offline pytest" in readme
    assert readme.index("uv sync") < readme.index("uv run --offline pytest")
    offline = run("uv run --offline pytest")
    assert offline.returncode == 0, offline.stdout[-3000:] + offline.stderr[-3000:]
    assert "7 passed" in offline.stdout


def test_modalkit_serve_serves_the_new_project(demo: Path) -> None:
    with serving(["app.py"], cwd=demo) as server:
        status, body = server.post("/predict_sync", {"text": "what a great day"})
        assert (status, body["label"]) == (200, "positive")


def test_init_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("mine")
    result = modalkit("init", "taken", cwd=tmp_path)
    assert result.returncode == 2
    assert "already exists and is not empty" in result.stderr
    assert (tmp_path / "taken" / "file.txt").read_text() == "mine"


def test_init_refuses_a_bad_name(tmp_path: Path) -> None:
    result = modalkit("init", "9lives", cwd=tmp_path)
    assert result.returncode == 2
    assert "not a usable project name" in result.stderr


def test_init_with_an_explicit_modalkit_path(tmp_path: Path) -> None:
    result = modalkit("init", "other", "--modalkit-path", str(WORKSPACE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(WORKSPACE / "packages" / "modalkit-serve") in (tmp_path / "other" / "pyproject.toml").read_text()
    bad = modalkit("init", "third", "--modalkit-path", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2
    assert "no modalkit-pipeline/pyproject.toml" in bad.stderr


def test_python_dash_m_and_console_script_agree() -> None:
    script = Path(sys.executable).parent / "modalkit"
    assert script.exists()
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=clean_env(), check=False)
    assert result.returncode == 0
    for command in ("serve", "deploy", "validate", "schema", "init"):
        assert command in result.stdout


def test_serve_reload_picks_up_an_edited_pipeline(tmp_path: Path) -> None:
    assert modalkit("init", "live", cwd=tmp_path).returncode == 0
    project = tmp_path / "live"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "reload.log").open("wb")
    proc = start_process_group(
        [sys.executable, "-m", "modalkit", "serve", "app.py", "--reload", "--port", str(port)],
        cwd=project,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def label(text: str) -> str | None:
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/predict_sync", json={"text": text}, timeout=30)
        except httpx.TransportError:
            return None  # not listening yet, or restarting
        return str(response.json()["label"]) if response.status_code == 200 else None

    try:
        _eventually(lambda: label("splendid") == "neutral", proc)
        pipeline = project / "live_pipeline.py"
        pipeline.write_text(pipeline.read_text().replace('"fun"})', '"fun", "splendid"})'))
        _eventually(lambda: label("splendid") == "positive", proc)
    finally:
        stop_process_group(proc)
        log.close()


def _eventually(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60  # a bound on start-up and reload, not a speed assertion
    while not condition():
        assert proc.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.1)
