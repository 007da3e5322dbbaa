"""Every failed item of ``/predict_batch`` carries the caller's own index, whatever batch it shared on the server
and however the worker isolated it (issue 22 item 1). Real ``modalkit serve``, concurrent clients."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modalkit.testing import ModalkitServer, serving

from .conftest import APPS, FIXTURES

APP = APPS / "modal_translation_app.py"
# "cat" translates; "boom" makes predict raise for its whole batch (the worker re-runs it in halves); a blank
# text is refused by postprocess with item_error (no index given).
TEXTS = {"cat": "chat", "boom": None, " ": None}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalkitServer]:
    cwd = tmp_path_factory.mktemp("indices")
    with serving(APP, config=FIXTURES / "translation.yaml", cwd=cwd) as running:
        yield running


def _post(server: ModalkitServer, texts: list[str]) -> tuple[list[str], int, Any]:
    status, body = server.post("/predict_batch?model_name=translation_model", [{"text": t} for t in texts])
    return texts, status, body


@pytest.mark.e2e
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(sorted(TEXTS)), min_size=1, max_size=5), min_size=1, max_size=8))
def test_every_batch_result_carries_the_callers_index(server: ModalkitServer, requests: list[list[str]]) -> None:
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        answers = list(pool.map(lambda texts: _post(server, texts), requests))
    for texts, status, body in answers:
        assert status == 200, body
        assert len(body) == len(texts)
        for i, (text, result) in enumerate(zip(texts, body, strict=True)):
            if TEXTS[text] is None:
                assert result["status"] == "error", (texts, body)
                assert result["index"] == i, (texts, body)
            else:
                assert (result["status"], result["translation"]) == ("success", TEXTS[text]), (texts, body)


@pytest.mark.e2e
def test_a_bisected_batch_reports_each_failure_at_its_own_index(server: ModalkitServer) -> None:
    _, status, body = _post(server, ["cat", "boom", "cat", " "])
    assert status == 200
    assert [r["status"] for r in body] == ["success", "error", "success", "error"]
    assert [r.get("index") for r in body] == [None, 1, None, 3]
