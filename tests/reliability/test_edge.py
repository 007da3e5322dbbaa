"""The edge of the served example: duplicate credentials and the log's first line, over real HTTP.

Requests go over loopback to ``modalkit serve examples/sentiment/app.py`` (with and without an API key); what
is checked is the answer a client gets, on the fast-path predict routes and on FastAPI's ``/jobs`` alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from tests.reliability.reliability_support import (
    API_KEY,
    OTHER_API_KEY,
    SENTIMENT_APP,
    SENTIMENT_CONFIG,
    Report,
    check_json_error,
    metric,
    start_server,
    wait_for,
    write_overlay,
)

from modalkit_serve.testing import ServedProcess

pytestmark = pytest.mark.reliability

ROUTES = [
    ("POST", "/predict_sync", {"text": "fine"}),
    ("POST", "/predict_batch", [{"text": "fine"}]),
    ("POST", "/predict_async", {"message": {"text": "fine"}}),
    ("GET", "/jobs/" + "a" * 32, None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[r[1] for r in ROUTES])
@pytest.mark.parametrize("order", ["good-first", "good-last"])
def test_a_duplicate_api_key_header_is_a_400_on_every_route(
    sentiment_with_auth: ServedProcess, method: str, path: str, body: object, order: str
) -> None:
    keys = [API_KEY, "a-wrong-key"] if order == "good-first" else ["a-wrong-key", API_KEY]
    headers = [("x-api-key", keys[0]), ("X-Api-Key", keys[1])]

    response = httpx.request(method, sentiment_with_auth.url + path, json=body, headers=headers, timeout=30)

    assert response.status_code == 400, response.text
    assert check_json_error(response) is None
    assert "x-api-key" in response.json()["detail"]
    assert API_KEY not in response.text


def test_every_stderr_line_is_a_json_record_from_the_first(sentiment: ServedProcess) -> None:
    lines = [line for line in sentiment.stderr().splitlines() if line.strip()]

    assert lines, "the server wrote nothing to stderr"
    for line in lines:
        record = json.loads(line)  # raises on the first line that is not JSON
        assert isinstance(record, dict), line
        assert "message" in record, line
    assert "loading" in json.loads(lines[0])["message"]


def test_an_over_long_batch_is_refused_by_its_count_with_a_small_body(sentiment: ServedProcess, report: Report) -> None:
    items = b",".join([b"1"] * 20000)  # 20k invalid items, well under the body limit

    response = httpx.post(
        sentiment.url + "/predict_batch",
        content=b"[" + items + b"]",
        headers={"content-type": "application/json"},
        timeout=30,
    )

    report.record(
        "oversized batch",
        "one /predict_batch of 20,000 invalid items (under the body limit) against max_batch_items 8",
        status=response.status_code,
        reply_bytes=len(response.content),
        seconds=round(response.elapsed.total_seconds(), 3),
    )
    assert response.status_code == 422, response.text[:300]
    assert check_json_error(response) is None
    assert len(response.content) < 4096, len(response.content)
    detail = response.json()["detail"]
    assert [error["type"] for error in detail] == ["too_long"], detail


def test_a_job_is_read_only_by_the_key_that_created_it(sentiment_with_auth: ServedProcess, report: Report) -> None:
    url = sentiment_with_auth.url
    owner = {"x-api-key": API_KEY}
    other = {"x-api-key": OTHER_API_KEY}
    accepted = httpx.post(url + "/predict_async", json={"message": {"text": "fine"}}, headers=owner, timeout=30)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    wait_for(
        lambda: httpx.get(f"{url}/jobs/{job_id}", headers=owner, timeout=10).json()["status"] == "success",
        timeout=30,
        what="the job to finish",
    )

    mine = httpx.get(f"{url}/jobs/{job_id}", headers=owner, timeout=10)
    theirs = httpx.get(f"{url}/jobs/{job_id}", headers=other, timeout=10)
    unknown = httpx.get(f"{url}/jobs/{'b' * 32}", headers=other, timeout=10)

    report.record(
        "cross-caller job read",
        "key A submits an async job; key B (also valid) and no key read GET /jobs/{id}",
        owner_status=mine.status_code,
        other_key_status=theirs.status_code,
        no_key_status=httpx.get(f"{url}/jobs/{job_id}", timeout=10).status_code,
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["result"] is not None
    assert theirs.status_code == 404, theirs.text
    assert check_json_error(theirs) is None
    # Another caller cannot tell someone else's job from an unknown id.
    assert theirs.json() == unknown.json()
    assert httpx.get(f"{url}/jobs/{job_id}", timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("field", "name"),
    [("success_queue", "q" * 20000), ("failure_queue", "a queue"), ("success_queue", "../etc"), ("success_queue", "é")],
    ids=["20k-chars", "space", "path", "non-ascii"],
)
def test_a_queue_name_no_backend_accepts_is_a_422_naming_the_field(
    sentiment: ServedProcess, field: str, name: str
) -> None:
    body = {"message": {"text": "fine"}, field: name}

    response = httpx.post(sentiment.url + "/predict_async", json=body, timeout=30)

    assert response.status_code == 422, response.text[:300]
    assert check_json_error(response) is None
    assert len(response.content) < 2048  # the name is not echoed back
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", field]


def test_distinct_queue_names_do_not_grow_the_metric_label_set(sentiment: ServedProcess, report: Report) -> None:
    url = sentiment.url
    names = [f"probe-{n}" for n in range(300)]
    for name in names:
        body = {"message": {"text": "fine"}, "success_queue": name}
        assert httpx.post(url + "/predict_async", json=body, timeout=30).status_code == 202

    def delivered() -> float:
        return metric(httpx.get(url + "/metrics", timeout=10).text, "modalkit_async_deliveries_total")

    wait_for(lambda: delivered() >= len(names), timeout=60, what="every result to be delivered")
    text = httpx.get(url + "/metrics", timeout=10).text
    labels = set(re.findall(r'^modalkit_async_deliveries_total\{queue="([^"]*)"\}', text, re.M))
    report.record(
        "label cardinality",
        f"{len(names)} async jobs, each naming its own success_queue; then /metrics",
        distinct_queue_names=len(names),
        queue_label_values=len(labels),
        metrics_kib=round(len(text) / 1024, 1),
    )

    assert len(labels) <= 33, sorted(labels)
    assert "other" in labels
    assert metric(text, "modalkit_async_deliveries_total", {"queue": "other"}) >= len(names) - 32


def test_allowed_queues_refuses_any_other_queue_name(tmp_path: Path) -> None:
    overlay = write_overlay(
        tmp_path / "queues.yaml", "app_settings:\n  queue_config:\n    allowed_queues: [results, failures]\n"
    )
    server = start_server(SENTIMENT_APP, SENTIMENT_CONFIG, tmp_path, overlay)
    try:
        allowed = {"message": {"text": "fine"}, "success_queue": "results", "failure_queue": "failures"}
        refused = {"message": {"text": "fine"}, "success_queue": "results", "failure_queue": "elsewhere"}
        ok = httpx.post(server.url + "/predict_async", json=allowed, timeout=30)
        no = httpx.post(server.url + "/predict_async", json=refused, timeout=30)
    finally:
        server.stop()

    assert ok.status_code == 202, ok.text
    assert no.status_code == 422, no.text
    [problem] = no.json()["detail"]
    assert problem["loc"] == ["body", "failure_queue"]
    assert "allowed_queues" in problem["msg"]
