"""app.py on the Modal side, offline with the real modal package: Modal's own `.local()` and `.info()`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from anomaly_model import Reading, Score

from modalkit import SyncInputModel
from modalkit.testing import offline_app

EXAMPLE = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app() -> Iterator[ModuleType]:
    with offline_app(EXAMPLE / "app.py", module_name="realtime_analytics_example_app") as module:
        yield module


def test_the_modal_class_scores_in_process(app: ModuleType) -> None:
    service = app.AnalyticsService(model_name="detector")
    [out] = service.process_request.local([SyncInputModel[Reading](message=Reading(sensor="boiler", value=20.0))])
    assert isinstance(out, Score)
    assert out.sensor == "boiler"
    assert not out.anomaly  # the first reading of a sensor has no history to deviate from


def test_modal_reads_the_example_configuration(app: ModuleType) -> None:
    info = app.AnalyticsService._get_class_service_function().info()
    assert (info.batching_info.max_batch_size, info.batching_info.wait_ms) == (128, 10)
    assert app.config.app_name == "realtime-analytics-dev"
    steps = [(s.method, s.args) for s in app.config.image_plan()]
    assert ("add_local_file", (str(EXAMPLE / "anomaly_model.py"), "/root/anomaly_model.py")) in steps
