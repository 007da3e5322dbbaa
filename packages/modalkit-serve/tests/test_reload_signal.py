"""A running ``modalkit serve`` reloads its models' artefacts on SIGHUP, as Modal's volume reload interval does.

The local counterpart of ``deployment_config.volume_reload_interval_seconds``: swap a model file on disk, send
the server process SIGHUP, and each pipeline's ``on_volume_reload`` runs between batches.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from modalkit_serve.testing import ServedProcess

APP = """
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_serve import ServiceSpec


class In(BaseModel):
    text: str


class Out(InferenceOutputModel):
    version: str


class Versioned(InferencePipeline[In, Out]):
    def __init__(self, model_name: str, folder: str, common: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(model_name, folder, common, **kwargs)
        self.path = Path(folder) / f"{model_name}.txt"
        self.version = self.path.read_text().strip()

    def on_volume_reload(self) -> None:
        self.version = self.path.read_text().strip()

    def preprocess(self, input_list: list[In]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[In], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[In], raw_output: dict[str, Any]) -> list[Out | ItemError]:
        return [Out(version=self.version) for _ in input_list]


service = ServiceSpec(Versioned)
"""

CONFIG = """
app_settings:
  app_prefix: versioned
model_settings:
  local_model_repository_folder: models
  model_entries:
    first: {}
    second: {}
"""


def _versions(client: httpx.Client) -> dict[str, str]:
    answers = {}
    for model in ("first", "second"):
        response = client.post(f"/predict_sync?model_name={model}", json={"text": "x"})
        assert response.status_code == 200, response.text
        answers[model] = response.json()["version"]
    return answers


@pytest.mark.e2e
def test_sighup_reloads_every_model_on_a_running_server(tmp_path: Path) -> None:
    folder = tmp_path / "svc"
    (folder / "models").mkdir(parents=True)
    (folder / "app.py").write_text(APP)
    (folder / "modalkit.yaml").write_text(CONFIG)
    (folder / "models" / "first.txt").write_text("v1")
    (folder / "models" / "second.txt").write_text("v1")
    with ServedProcess(folder / "app.py", log_dir=tmp_path, ready_path="/ready") as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert _versions(client) == {"first": "v1", "second": "v1"}
            (folder / "models" / "first.txt").write_text("v2")  # the artefact swap
            (folder / "models" / "second.txt").write_text("v2")
            assert _versions(client) == {"first": "v1", "second": "v1"}  # nothing reloads by itself
            server.signal(signal.SIGHUP)
            deadline = time.monotonic() + 20  # a bound on waiting, not a speed check
            while _versions(client) != {"first": "v2", "second": "v2"}:
                assert time.monotonic() < deadline, "the models did not reload after SIGHUP"
                time.sleep(0.05)
            assert (client.get("/ready")).status_code == 200
            # The log is written by a background thread: wait for the record rather than read it at once.
            while "SIGHUP: reloaded" not in server.stderr():
                assert time.monotonic() < deadline, "no log record of the reload"
                time.sleep(0.05)
        log = server.stderr()
    assert "SIGHUP: reloading the artefacts of 2 models" in log
