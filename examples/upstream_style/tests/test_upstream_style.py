"""The earlier modalkit's README flow: the same app file on Modal (offline) and served by `modalkit serve`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modalkit.iomodel import SyncInputModel

EXAMPLE = Path(__file__).resolve().parent.parent
KEY = "upstream-test-key"


def test_the_pipeline_is_the_readme_model(upstream_app: Any) -> None:
    pipeline = upstream_app.TranslationModel("translation_model", "./models", {"device": "cpu"})

    outputs = pipeline.run_inference([upstream_app.TextInput(text="Hello"), upstream_app.TextInput(text="world")])

    assert [(o.translated_text, o.confidence) for o in outputs] == [("HELLO", 0.95), ("WORLD", 0.95)]


def test_the_modal_class_carries_the_config(upstream_app: Any) -> None:
    info = upstream_app.TranslationApp._get_class_service_function().info()

    assert upstream_app.modal_config.app_name == "translation-service-dev"
    assert (info.batching_info.max_batch_size, info.batching_info.wait_ms) == (32, 100)
    assert info.method_names == ["process_request"]


def test_the_batched_method_runs_offline(upstream_app: Any) -> None:
    """What Modal runs in the container, called with ``.local()``: no Modal account needed."""
    request: Any = SyncInputModel[upstream_app.TextInput]
    service = upstream_app.TranslationApp(model_name="translation_model")

    results = service.process_request.local([request(message=upstream_app.TextInput(text="Hello world"))])

    assert [r.model_dump() for r in results] == [{"translated_text": "HELLO WORLD", "confidence": 0.95}]


@pytest.mark.e2e
def test_modalkit_serve_serves_the_readme_app_and_the_readme_client_works(
    serving: Callable[..., Any], client_script: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(EXAMPLE / "app.py", cwd=tmp_path, env={"TRANSLATION_API_KEY": KEY}) as server:
        answers = client_script.call_api(server.url, KEY)
        assert client_script.main(["--url", server.url, "--api-key", "wrong"]) == 1
        health = server.get("/health")
        unauthorised = server.post("/predict_sync", {"text": "Hello"})

    assert answers["predict_sync"] == {"translated_text": "HELLO WORLD", "confidence": 0.95}
    assert answers["predict_batch"] == [
        {"translated_text": "HELLO", "confidence": 0.95},
        {"translated_text": "WORLD", "confidence": 0.95},
    ]
    job = answers["predict_async"]
    assert (job["status"], job["result"]) == ("success", {"translated_text": "PROCESS THIS", "confidence": 0.95})
    assert "401" in capsys.readouterr().err
    assert health[0] == 200
    assert unauthorised == (401, {"detail": "Not authenticated"})
