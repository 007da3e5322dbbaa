"""schemathesis over the service's own OpenAPI document: every route, with and without auth.

The document comes from the real server (``modalkit serve examples/sentiment/app.py``, over loopback), and every
generated request goes there too. Each route gets schema-valid (positive) and schema-breaking (negative)
requests, and every check schemathesis has must pass: no 5xx; status codes, content types, headers and bodies
as documented; valid requests accepted (save one documented 422: an input the pipeline refuses) and invalid
ones refused.

(schemathesis's own pytest loader, ``schemathesis.pytest.from_fixture``, does not run under pytest 9 yet: it
sets a node attribute pytest renamed. The same generation runs here through ``operation.as_strategy()``.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from tests.reliability.reliability_support import API_KEY, Report

from modalkit_serve.testing import ServedProcess

pytestmark = pytest.mark.reliability

ROUTES = [
    ("POST", "/predict_sync"),
    ("POST", "/predict_batch"),
    ("POST", "/predict_async"),
    ("GET", "/jobs/{job_id}"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
]
# Small on purpose: the whole suite must stay within a few minutes on 2 cores.
MAX_EXAMPLES = 40
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
# schemathesis's default statuses for "invalid data was refused" (5xx are caught by the server-error check).
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]
_calls: dict[str, int] = {"requests": 0, "refused_by_pipeline": 0}


def positive_data_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's ``positive_data_acceptance``, with one documented exception, counted in the figures.

    ``POST /predict_sync`` answers 422 ``{"detail": [{"type": "item_error", "loc": ["body"], "msg"}]}`` when the
    pipeline refuses a schema-valid input with ``self.item_error(...)``: the sentiment pipeline does so for text
    that is only whitespace (``"\u00a0"``), which its input schema allows. The input is at fault, not the server,
    and the OpenAPI document declares this 422. Any other refusal of schema-valid data fails as in schemathesis;
    and no 5xx is excused anywhere (schemathesis's ``not_a_server_error`` runs as it is).
    """
    if response.status_code == 422 and case.operation.path == "/predict_sync":
        detail = response.json().get("detail")
        if isinstance(detail, list) and len(detail) == 1:
            problem = detail[0]
            if problem.get("type") == "item_error" and problem.get("loc") == ["body"] and problem.get("msg"):
                _calls["refused_by_pipeline"] += 1
                return None
    verdict: bool | None = positive_data_acceptance(ctx, response, case)
    return verdict


def load(server: ServedProcess, headers: dict[str, str] | None = None) -> Any:
    """The served document, with an explicit config (so no stray schemathesis.toml changes the checks)."""
    config: dict[str, Any] = {
        "generation": {
            # The service ignores query parameters it does not know (as most HTTP APIs do, and FastAPI does);
            # the hostile-input tests check that. Inventing some is not a schema violation it should refuse.
            "allow-extra-parameters": False,
        },
        "checks": {
            # schemathesis's list, plus 413: how the service refuses a body over max_body_bytes, as much a
            # refusal as 422.
            "negative_data_rejection": {"expected-statuses": [*REFUSALS, "413"]},
        },
    }
    if headers:
        config["headers"] = headers  # the credentials, sent with every request and not mutated
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=SchemathesisConfig.from_dict(config))


def fuzz(server: ServedProcess, method: str, path: str, mode: GenerationMode, headers: dict[str, str]) -> None:
    operation = load(server, headers)[path][method]

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _calls["requests"] += 1
        case.call_and_validate(
            timeout=30, excluded_checks=[positive_data_acceptance], additional_checks=[positive_data_accepted]
        )

    run()


@pytest.fixture(scope="module", autouse=True)
def _figures(report: Report) -> Any:
    yield
    report.record(
        "schemathesis",
        "every route of the served OpenAPI document, schema-valid and schema-breaking requests, with and without "
        "the API key; all of schemathesis's checks",
        requests=_calls["requests"],
        errors=0,
        refused_by_pipeline=_calls["refused_by_pipeline"],
    )


def test_the_document_lists_exactly_the_routes_fuzzed_here(sentiment: ServedProcess) -> None:
    schema = load(sentiment)
    documented = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}

    assert documented == set(ROUTES)


def test_an_input_the_pipeline_refuses_is_its_documented_422_not_a_5xx(sentiment: ServedProcess) -> None:
    # Fuzzing meets this case only by chance (text that is only whitespace); here it is sent on purpose, and every
    # schemathesis check runs on the answer: status and body as documented, no server error.
    operation = load(sentiment)["/predict_sync"]["POST"]
    case = operation.Case(body={"text": "\u00a0"})
    _calls["requests"] += 1

    response = case.call_and_validate(
        timeout=30, excluded_checks=[positive_data_acceptance], additional_checks=[positive_data_accepted]
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"type": "item_error", "loc": ["body"], "msg": "text is blank: nothing to score"}]
    }


# Schema-breaking requests exist only where the document constrains something: the request bodies and the
# model_name query (a GET route without parameters, or with a free-form string, has nothing to break).
CASES = [pytest.param(m, p, GenerationMode.POSITIVE, id=f"{m} {p} positive") for m, p in ROUTES] + [
    pytest.param(m, p, GenerationMode.NEGATIVE, id=f"{m} {p} negative") for m, p in ROUTES if m == "POST"
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_without_auth(sentiment: ServedProcess, method: str, path: str, mode: GenerationMode) -> None:
    fuzz(sentiment, method, path, mode, {})


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_with_the_api_key(sentiment_with_auth: ServedProcess, method: str, path: str, mode: GenerationMode) -> None:
    fuzz(sentiment_with_auth, method, path, mode, {"x-api-key": API_KEY})


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_with_auth_on_but_no_key(sentiment_with_auth: ServedProcess, method: str, path: str) -> None:
    fuzz(sentiment_with_auth, method, path, GenerationMode.POSITIVE, {})
