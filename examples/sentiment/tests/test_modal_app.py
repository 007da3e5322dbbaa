"""app.py on the Modal side, offline with the real modal package: Modal's own `.local()` and `.info()`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sentiment_model import SentimentOutput, TextInput

from modalkit import ItemError, SyncInputModel
from modalkit.testing import offline_app

EXAMPLE = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app() -> Iterator[ModuleType]:
    with offline_app(EXAMPLE / "app.py", module_name="sentiment_example_app") as module:
        yield module


def test_the_modal_class_scores_texts_in_process(app: ModuleType) -> None:
    service = app.SentimentService(model_name="vader")
    requests = [SyncInputModel[TextInput](message=TextInput(text=t)) for t in ("I love it!", "I hate it.", "   ")]
    good, bad, blank = service.process_request.local(requests)
    assert isinstance(good, SentimentOutput)
    assert good.label == "positive"
    assert isinstance(bad, SentimentOutput)
    assert bad.label == "negative"
    assert isinstance(blank, ItemError)


def test_modal_reads_the_example_configuration(app: ModuleType) -> None:
    info = app.SentimentService._get_class_service_function().info()
    assert (info.batching_info.max_batch_size, info.batching_info.wait_ms) == (32, 10)
    assert (info.cpu, info.memory_mib) == (1.0, 1024)
    web = app.web_endpoints.info()
    assert web.concurrency_info.max_inputs == 100  # deployment_config.handler_concurrency (default)
    assert app.config.app_name == "sentiment-dev"


def test_the_image_carries_the_model_and_its_dependency(app: ModuleType) -> None:
    steps = [(s.method, s.args) for s in app.config.image_plan()]
    assert ("pip_install", ("vaderSentiment==3.3.2",)) in steps
    assert ("add_local_file", (str(EXAMPLE / "sentiment_model.py"), "/root/sentiment_model.py")) in steps
