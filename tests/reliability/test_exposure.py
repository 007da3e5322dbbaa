"""Every route's exposure is what the table in ``docs/auth.md`` says, on the real server with auth on.

The table is read from the page itself, so the documentation and the server cannot drift apart: each row's
"guarded" column is checked against a request without a key (401, or an open answer) and with one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from tests.reliability.reliability_support import (
    API_KEY,
    API_KEY_ENV,
    LIMITS,
    ROOT,
    SENTIMENT_APP,
    SENTIMENT_CONFIG,
    start_server,
    write_overlay,
)

from modalkit_serve.testing import ServedProcess

pytestmark = pytest.mark.reliability

AUTH_PAGE = ROOT / "docs" / "auth.md"
# Concrete requests for the table's route patterns; a body the route would accept once past auth.
EXAMPLES: dict[str, tuple[str, object]] = {
    "/predict_sync": ("/predict_sync", {"text": "fine"}),
    "/predict_batch": ("/predict_batch", [{"text": "fine"}]),
    "/predict_async": ("/predict_async", {"message": {"text": "fine"}}),
    "/predict_stream": ("/predict_stream", {"text": "fine"}),
    "/jobs/{job_id}": ("/jobs/" + "a" * 32, None),
    "/docs/assets/*": ("/docs/assets/swagger-ui.css", None),
}


def exposure_table() -> list[tuple[str, str, str]]:
    """(method, path, guarded) for each route in the exposure table of docs/auth.md."""
    text = AUTH_PAGE.read_text()
    section = text.split("## Which routes need a key", 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[str, str, str]] = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for method, path in re.findall(r"`(GET|POST) ([^`]+)`", cells[0]):
            rows.append((method, path, cells[1]))
    assert rows, f"no exposure table found in {AUTH_PAGE}"
    return rows


def guarded(rule: str, protect_docs: bool) -> bool:
    if rule == "always":
        return True
    if rule == "never":
        return False
    if "protect_docs" in rule:
        return protect_docs
    if "protect_metrics" in rule:
        return False  # neither server here sets it
    raise AssertionError(f"unknown exposure rule {rule!r} in {AUTH_PAGE}")


@pytest.fixture(scope="module")
def docs_protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    """The guarded example with ``auth_config.protect_docs: true``."""
    logs = tmp_path_factory.mktemp("sentiment-protect-docs")
    limits = write_overlay(logs / "limits.yaml", LIMITS)
    auth = write_overlay(
        logs / "auth.yaml", f"app_settings:\n  auth_config:\n    api_key_env: {API_KEY_ENV}\n    protect_docs: true\n"
    )
    server = start_server(SENTIMENT_APP, SENTIMENT_CONFIG, logs, limits, auth, env={API_KEY_ENV: API_KEY})
    yield server
    server.stop()


def _check(server: ServedProcess, protect_docs: bool) -> list[str]:
    wrong = []
    for method, pattern, rule in exposure_table():
        path, body = EXAMPLES.get(pattern, (pattern, None))
        anonymous = httpx.request(method, server.url + path, json=body, timeout=30)
        if anonymous.status_code in (404, 405) and pattern in ("/predict_stream",):
            continue  # a route this example's pipeline does not offer
        keyed = httpx.request(method, server.url + path, json=body, headers={"x-api-key": API_KEY}, timeout=30)
        expect_guard = guarded(rule, protect_docs)
        if expect_guard and anonymous.status_code != 401:
            wrong.append(f"{method} {path}: documented as guarded ({rule}), answered {anonymous.status_code}")
        if not expect_guard and anonymous.status_code == 401:
            wrong.append(f"{method} {path}: documented as open ({rule}), answered 401")
        if keyed.status_code in (401, 403):
            wrong.append(f"{method} {path}: refused with a valid key ({keyed.status_code})")
    return wrong


def test_every_route_is_exposed_as_the_auth_page_says(sentiment_with_auth: ServedProcess) -> None:
    assert _check(sentiment_with_auth, protect_docs=False) == []


def test_protect_docs_guards_the_documentation_routes(docs_protected: ServedProcess) -> None:
    assert _check(docs_protected, protect_docs=True) == []
    assert httpx.get(docs_protected.url + "/openapi.json", timeout=10).status_code == 401
    keyed = httpx.get(docs_protected.url + "/openapi.json", headers={"x-api-key": API_KEY}, timeout=10)
    assert keyed.status_code == 200
    assert "/predict_sync" in keyed.json()["paths"]


def test_the_table_lists_every_route_the_server_serves(sentiment_with_auth: ServedProcess) -> None:
    documented = {path for _, path, _ in exposure_table()}
    served = set(httpx.get(sentiment_with_auth.url + "/openapi.json", timeout=10).json()["paths"])
    assert served - documented == set()
    assert {"/docs", "/redoc", "/openapi.json", "/health", "/ready", "/metrics"} <= documented
