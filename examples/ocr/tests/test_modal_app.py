"""app.py on the Modal side, offline with the real modal package: Modal's own `.local()` and `.info()`."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from images import text_image
from ocr_model import ImageInput, OcrOutput

from modalkit import SyncInputModel
from modalkit.testing import offline_app

EXAMPLE = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app() -> Iterator[ModuleType]:
    with offline_app(EXAMPLE / "app.py", module_name="ocr_example_app") as module:
        yield module


def test_the_modal_class_reads_an_image_in_process(app: ModuleType) -> None:
    service = app.OcrService(model_name="ppocr")
    message = ImageInput(image=text_image(["read on Modal"]))
    [out] = service.process_request.local([SyncInputModel[ImageInput](message=message)])
    assert isinstance(out, OcrOutput)
    assert out.text == "read on Modal"


def test_modal_reads_the_example_configuration(app: ModuleType) -> None:
    info = app.OcrService._get_class_service_function().info()
    assert (info.batching_info.max_batch_size, info.batching_info.wait_ms) == (8, 5)
    assert (info.cpu, info.memory_mib) == (2.0, 2048)
    assert app.config.app_name == "ocr-dev"


def test_the_image_carries_the_models_and_the_pipeline(app: ModuleType) -> None:
    steps = [(s.method, s.args) for s in app.config.image_plan()]
    pip = [arg for method, args in steps if method == "pip_install" for arg in args]
    assert "rapidocr-onnxruntime==1.4.4" in pip
    assert any(p.startswith("opencv-python-headless==") for p in pip)  # no libGL in debian_slim
    assert ("add_local_file", (str(EXAMPLE / "ocr_model.py"), "/root/ocr_model.py")) in steps


def test_the_image_pins_what_the_tests_ran_with(app: ModuleType) -> None:
    # The Modal container installs these from modalkit.yaml; uv.lock is what CI tested. They must agree.
    locked = {p["name"]: p["version"] for p in tomllib.loads((EXAMPLE / "uv.lock").read_text())["package"]}
    pins = [p for s in app.config.image_plan() if s.method == "pip_install" for p in s.args if "==" in p]
    assert pins
    for pin in pins:
        name, version = pin.split("==")
        assert locked.get(name.lower()) == version, f"modalkit.yaml pins {pin}, uv.lock has {locked.get(name.lower())}"
