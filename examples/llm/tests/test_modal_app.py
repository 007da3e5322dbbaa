"""app.py on the Modal side, offline with the real modal package: Modal's own `.local()` and `.info()`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from llm_model import Completion, Prompt

from modalkit import SyncInputModel
from modalkit.testing import offline_app

EXAMPLE = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app() -> Iterator[ModuleType]:
    with offline_app(EXAMPLE / "app.py", module_name="llm_example_app") as module:
        yield module


def test_the_modal_class_generates_in_process(app: ModuleType) -> None:
    service = app.LLMService(model_name="bigram")
    prompt = Prompt(text="The server streams each", temperature=0.0, max_tokens=4)
    [out] = service.process_request.local([SyncInputModel[Prompt](message=prompt)])
    assert isinstance(out, Completion)
    assert out.text == " token to the model"


def test_modal_reads_the_example_configuration(app: ModuleType) -> None:
    info = app.LLMService._get_class_service_function().info()
    assert (info.batching_info.max_batch_size, info.batching_info.wait_ms) == (16, 5)
    assert (info.cpu, info.memory_mib) == (2.0, 2048)
    assert app.config.app_name == "llm-dev"


def test_the_image_carries_the_runtime_and_the_model_code(app: ModuleType) -> None:
    steps = [(s.method, s.args) for s in app.config.image_plan()]
    pip = [arg for method, args in steps if method == "pip_install" for arg in args]
    assert any(p.startswith("onnxruntime==") for p in pip)
    assert any(p.startswith("tokenizers==") for p in pip)
    assert ("add_local_file", (str(EXAMPLE / "llm_model.py"), "/root/llm_model.py")) in steps
