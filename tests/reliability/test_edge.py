"""The edge of the served example: duplicate credentials and the log's first line, over real HTTP.

Requests go over loopback to ``modalkit serve examples/sentiment/app.py`` (with and without an API key); what
is checked is the answer a client gets, on the fast-path predict routes and on FastAPI's ``/jobs`` alike.
"""

from __future__ import annotations

import json

import httpx
import pytest
from tests.reliability.reliability_support import API_KEY, OTHER_API_KEY, check_json_error, wait_for

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


def test_an_over_long_batch_is_refused_by_its_count_with_a_small_body(sentiment: ServedProcess) -> None:
    items = b",".join([b"1"] * 20000)  # 20k invalid items, well under the body limit

    response = httpx.post(
        sentiment.url + "/predict_batch",
        content=b"[" + items + b"]",
        headers={"content-type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 422, response.text[:300]
    assert check_json_error(response) is None
    assert len(response.content) < 4096, len(response.content)
    detail = response.json()["detail"]
    assert [error["type"] for error in detail] == ["too_long"], detail


def test_a_job_is_read_only_by_the_key_that_created_it(sentiment_with_auth: ServedProcess) -> None:
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

    assert mine.status_code == 200, mine.text
    assert mine.json()["result"] is not None
    assert theirs.status_code == 404, theirs.text
    assert check_json_error(theirs) is None
    # Another caller cannot tell someone else's job from an unknown id.
    assert theirs.json() == unknown.json()
    assert httpx.get(f"{url}/jobs/{job_id}", timeout=10).status_code == 401
