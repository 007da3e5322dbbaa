"""`import modal` costs seconds: modalkit loads it only when something Modal-shaped is used (issue 23 item 10)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SPEC_APP = """
from typing import Any

from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_serve import ServiceSpec


class In(BaseModel):
    text: str


class Out(InferenceOutputModel):
    upper: str


class Upper(InferencePipeline[In, Out]):
    def preprocess(self, input_list: list[In]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[In], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[In], raw_output: dict[str, Any]) -> list[Out | ItemError]:
        return [Out(upper=i.text.upper()) for i in input_list]


service = ServiceSpec(Upper)
"""

CONFIG = """
app_settings:
  app_prefix: upper
model_settings:
  model_entries:
    upper: {}
"""


def _run(code: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=str(cwd))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_modalkit_and_its_cli_does_not_import_modal(tmp_path: Path) -> None:
    code = """
        import sys
        import modalkit, modalkit.cli, modalkit.testing
        from modalkit import InferencePipeline, ModalConfig, Settings, local_app, load_settings
        print("modal" in sys.modules)
    """
    assert _run(code, tmp_path) == "False"


def test_the_modal_names_load_modal_when_first_used(tmp_path: Path) -> None:
    code = """
        import sys
        import modalkit
        from modalkit import ModalService, create_web_endpoints
        import modalkit._service, modalkit._web
        assert ModalService is modalkit._service.ModalService
        assert create_web_endpoints is modalkit._web.create_web_endpoints
        assert modalkit.ModalRunner is modalkit._web.ModalRunner
        assert set(modalkit.__all__) <= set(dir(modalkit))
        print("modal" in sys.modules)
    """
    assert _run(code, tmp_path) == "True"


def test_serving_an_app_file_without_modal_objects_does_not_import_modal(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(SPEC_APP)
    (tmp_path / "modalkit.yaml").write_text(CONFIG)
    code = """
        import sys
        from modalkit._serve import load_app_service, use_config_beside
        use_config_beside("app.py")
        spec = load_app_service("app.py")
        print(spec.pipeline_cls.__name__, "modal" in sys.modules)
    """
    assert _run(code, tmp_path) == "Upper False"
