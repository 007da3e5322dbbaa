"""``modalkit.testing``: a real ``modalkit serve`` process for a user's own end-to-end tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modalkit.testing import ModalkitServer, offline_app, serving

from .conftest import APPS, FIXTURES

APP = APPS / "modal_translation_app.py"
KEY = "e2e-key-42"


def test_serving_is_the_server_object_itself_with_every_argument() -> None:
    # One object: `serving(...)` cannot drift from ModalkitServer's arguments (it had renamed one and dropped one).
    import inspect

    assert serving is ModalkitServer
    assert {"startup_timeout", "ready_path", "log_dir", "base_env"} <= set(inspect.signature(serving).parameters)


@pytest.mark.e2e
def test_serving_starts_the_app_ready_and_stops_it_by_pid(tmp_path: Path) -> None:
    overlay = tmp_path / "auth.yaml"
    overlay.write_text(f"app_settings:\n  auth_config:\n    api_key: {KEY}\n")
    # Several config files are laid over each other, as `--config a.yaml,b.yaml` does.
    with serving(APP, config=[FIXTURES / "translation.yaml", overlay], cwd=tmp_path) as server:
        assert isinstance(server, ModalkitServer)
        assert server.url == f"http://127.0.0.1:{server.port}"
        # Ready on return: the models are loaded.
        assert server.get("/ready") == (200, {"status": "ready"})
        status, body = server.post("/predict_sync?model_name=translation_model", {"text": "cat"})
        assert status == 401
        assert "detail" in body
        status, body = server.post(
            "/predict_sync?model_name=translation_model", {"text": "cat"}, headers={"x-api-key": KEY}
        )
        assert (status, body["translation"]) == (200, "chat")
        process = server.process
    assert process is not None
    assert process.poll() is not None
    assert list(tmp_path.glob("*.stderr.log")), "the server's log is kept beside the test's files"


@pytest.mark.e2e
def test_an_app_that_cannot_start_is_reported_with_its_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('this app file is broken')\n")
    server = ModalkitServer("broken.py", cwd=tmp_path)
    with pytest.raises(RuntimeError, match=r"(?s)modalkit serve exited with 2.*this app file is broken"):
        server.start()


def test_offline_app_imports_the_app_with_its_own_config_and_restores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "modalkit.yaml").write_text("app_settings: {}\n")
    (tmp_path / "app.py").write_text(
        "import os\nCONFIG = os.environ['MODALKIT_CONFIG']\nPOSTFIX = os.environ.get('MODALKIT_APP_POSTFIX')\n"
    )
    monkeypatch.setenv("MODALKIT_CONFIG", "elsewhere.yaml")
    monkeypatch.setenv("MODALKIT_APP_POSTFIX", "prod")
    with offline_app(tmp_path / "app.py", module_name="offline_app_test_app") as app:
        assert str(tmp_path / "modalkit.yaml") == app.CONFIG  # the file beside the app, not the caller's
        assert app.POSTFIX is None  # the app name the config gives, as in `modal deploy`
    assert os.environ["MODALKIT_CONFIG"] == "elsewhere.yaml"
    assert os.environ["MODALKIT_APP_POSTFIX"] == "prod"
