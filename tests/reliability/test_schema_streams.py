"""schemathesis over /predict_stream (Server-Sent Events) and the upload form of /predict_sync, on a streaming
pipeline that takes a file, served by ``modalkit serve``: schema-valid and schema-breaking requests (JSON bodies
and multipart forms), every schemathesis check, no 5xx. The other routes are fuzzed by test_schema.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from tests.reliability.reliability_support import Report, start_server
from tests.reliability.test_schema import FUZZ, load, positive_data_accepted

from modalkit_serve.testing import ServedProcess

pytestmark = pytest.mark.reliability

APP = Path(__file__).parent / "apps" / "streams" / "app.py"
_calls = {"requests": 0}


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    logs = tmp_path_factory.mktemp("streams")
    server = start_server(APP, APP.parent / "modalkit.yaml", logs)
    yield server
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def _figures(report: Report) -> Any:
    yield
    report.record(
        "schemathesis (streams and uploads)",
        "POST /predict_stream and the multipart form of POST /predict_sync on a streaming pipeline with a file "
        "field; schema-valid and schema-breaking requests; all of schemathesis's checks",
        requests=_calls["requests"],
        errors=0,
    )


@pytest.mark.parametrize("media", ["application/json", "multipart/form-data"])
@pytest.mark.parametrize("path", ["/predict_stream", "/predict_sync"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_the_stream_route_and_the_upload_form(streams: ServedProcess, path: str, media: str, mode: Any) -> None:
    operation = load(streams)[path]["POST"]

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode, media_type=media))
    def run(case: Any) -> None:
        _calls["requests"] += 1
        case.call_and_validate(
            timeout=30, excluded_checks=[positive_data_acceptance], additional_checks=[positive_data_accepted]
        )

    run()


def test_a_stream_read_by_schemathesis_is_events_ending_in_done(streams: ServedProcess) -> None:
    operation = load(streams)["/predict_stream"]["POST"]
    case = operation.Case(body={"text": "one two", "max_chunks": 2}, media_type="application/json")
    _calls["requests"] += 1
    response = case.call_and_validate(timeout=30)
    assert response.status_code == 200
    assert response.text.endswith('event: done\ndata: {"status": "success", "chunks": 3}\n\n')
