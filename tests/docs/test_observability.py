"""docs/observability.md lists exactly the metrics, access-log fields and loggers the code has."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from modalkit_config import settings_from_dict
from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_serve import LocalRunner, ServeMetrics, create_app

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
_STANDARD_RECORD_KEYS = set(vars(logging.LogRecord("x", logging.INFO, "", 0, "", None, None))) | {"message"}


def _section(title: str) -> str:
    start = PAGE.index(title)
    following = re.search(r"^#{2,3} ", PAGE[start + len(title) :], flags=re.MULTILINE)
    return PAGE[start : start + len(title) + following.start()] if following else PAGE[start:]


def _first_column(text: str) -> list[str]:
    return re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE)


class Text(BaseModel):
    text: str


class Size(InferenceOutputModel):
    size: int


class SizePipeline(InferencePipeline[Text, Size]):
    def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[Text], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Size | ItemError]:
        return [Size(size=len(item.text)) for item in input_list]


def test_the_metrics_table_matches_what_metrics_serves() -> None:
    metrics = ServeMetrics(process_metrics=False)
    metrics.ready_source = lambda: True
    metrics.queue_depth_source = dict
    served = dict(re.findall(r"^# TYPE (modalkit_\w+) (\w+)$", metrics.render().decode(), flags=re.MULTILINE))
    rows = re.findall(r"^\| `(modalkit_\w+)` \| (\w+) \|", _section("## Metrics"), flags=re.MULTILINE)
    assert dict(rows) == served
    assert len(rows) == len(served)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_records() -> Any:
    handler = _Records()
    access = logging.getLogger("modalkit.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)


async def test_the_access_log_fields_match_a_real_request(access_records: list[logging.LogRecord]) -> None:
    settings = settings_from_dict(
        {"app_settings": {"app_prefix": "obs"}, "model_settings": {"model_entries": {"m": {}}}}
    )
    runner = LocalRunner(SizePipeline, settings)
    app = create_app(runner, Text, Size, settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert await runner.wait_ready()  # models load in the background
        response = await client.post("/predict_sync", json={"text": "abc"}, headers={"x-request-id": "docs-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "docs-1"
    [record] = [r for r in access_records if getattr(r, "path", None) == "/predict_sync"]
    fields = set(vars(record)) - _STANDARD_RECORD_KEYS
    documented = _first_column(_section("### The access log"))
    assert sorted(documented) == sorted(fields)
    assert record.request_id == "docs-1"  # type: ignore[attr-defined]

    sample = json.loads(re.search(r"```json\n(.*?)\n```", _section("### The access log"), flags=re.DOTALL)[1])  # type: ignore[index]
    assert set(sample) == {"time", "level", "logger", "message", *fields}


def test_every_documented_logger_exists_in_the_source() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "packages").glob("*/src/**/*.py"))
    used = set(re.findall(r"getLogger\(\s*[\"']([\w.]+)[\"']", sources)) | set(
        re.findall(r"^ACCESS_LOGGER = \"([\w.]+)\"", sources, flags=re.MULTILINE)
    )
    documented = _first_column(_section("### Other loggers"))
    assert documented
    assert [name for name in documented if name not in used] == []
