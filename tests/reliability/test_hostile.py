"""Hostile input against the served example: every answer is a clear 4xx in JSON, never a 5xx or a stack trace.

Requests go over loopback to ``modalkit serve examples/sentiment/app.py`` (the predict routes are served by
modalkit's ASGI fast path, the others by FastAPI). What the HTTP parser itself refuses (CR/LF inside a header, a
malformed Content-Length) never reaches the app: uvicorn answers those with its own plain-text 400, and the tests
check that answer and that nothing of the request was echoed.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import httpx
import pytest
from tests.reliability.reliability_support import MAX_BODY_BYTES, MAX_JSON_DEPTH, Report, check_json_error

from modalkit_serve.testing import ServedProcess

pytestmark = pytest.mark.reliability

PREDICT = ["/predict_sync", "/predict_batch", "/predict_async"]
SAFE_ID = re.compile(r"[A-Za-z0-9._:\-/+=@]{1,128}")
JSON_HEADERS = {"content-type": "application/json"}
_seen: dict[str, int] = {"requests": 0, "5xx": 0}


@pytest.fixture(scope="module")
def client(sentiment: ServedProcess, report: Report) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sentiment.url, timeout=30) as c:
        yield c
    report.record(
        "hostile input",
        "malformed JSON, wrong content types, huge and chunked bodies, deep nesting, odd unicode, junk query "
        "parameters, path traversal in job ids, header injection in request ids",
        requests=_seen["requests"],
        errors=_seen["5xx"],
    )


def clean_4xx(response: httpx.Response, *allowed: int) -> None:
    """A 4xx (one of ``allowed`` when given) with a JSON ``detail`` and no stack trace."""
    _seen["requests"] += 1
    if response.status_code >= 500:
        _seen["5xx"] += 1
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if allowed:
        assert response.status_code in allowed, f"{response.status_code}: {response.text[:300]}"
    problem = check_json_error(response)
    assert problem is None, problem


def ok(response: httpx.Response) -> None:
    _seen["requests"] += 1
    assert response.status_code in (200, 202), f"{response.status_code}: {response.text[:300]}"


def no_unhandled_errors(server: ServedProcess) -> None:
    log = server.stderr()
    assert "unhandled error" not in log
    assert "Traceback" not in log


# -- malformed bodies -------------------------------------------------------------------------------------------

MALFORMED = [
    b"",
    b"{",
    b'{"text": }',
    b'{"text": "unterminated',
    b"null",
    b"true",
    b'"just a string"',
    b'{"text": "a"} trailing junk',
    b"\xef\xbb\xbf" + b'{"text": "a BOM first"}',
    b"\xff\xfe\x00{",
    b'{"text": "\xc0\xaf overlong utf-8"}',
    b'{"text": "raw \x00 NUL"}',
    b"{'text': 'single quotes'}",
    b'{"text": NaN}',
    b'{"text": 1e999}',
    b'{"text": ' + b"9" * 5000 + b"}",
    b'{"text": ["a"]}',
    b'{"text": {"$gt": ""}}',
]


@pytest.mark.parametrize("path", PREDICT)
@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_json_is_a_422_naming_the_body(client: httpx.Client, path: str, body: bytes) -> None:
    response = client.post(path, content=body, headers=JSON_HEADERS)

    clean_4xx(response, 422)
    assert response.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize("path", PREDICT)
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonp",
        "image/png",
        "",
    ],
)
def test_a_wrong_content_type_is_a_415(client: httpx.Client, path: str, content_type: str) -> None:
    body = b'{"text": "a body that would be fine as JSON"}'
    if path == "/predict_batch":
        body = b"[" + body + b"]"
    elif path == "/predict_async":
        body = b'{"message": ' + body + b"}"

    response = client.post(path, content=body, headers={"content-type": content_type})

    clean_4xx(response, 415)
    assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_content_types_are_accepted(client: httpx.Client, content_type: str) -> None:
    ok(client.post("/predict_sync", content=b'{"text": "fine"}', headers={"content-type": content_type}))


# -- size and nesting ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PREDICT)
def test_a_huge_body_is_a_413_before_it_is_read(client: httpx.Client, path: str) -> None:
    response = client.post(path, content=b"x" * 8_000_000, headers=JSON_HEADERS)

    clean_4xx(response, 413)
    assert "max_body_bytes" in response.json()["detail"]


@pytest.mark.parametrize("path", PREDICT)
def test_a_huge_chunked_body_is_a_413_while_it_is_read(client: httpx.Client, path: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 4 MiB in all, with no Content-Length
            yield b" " * 65536

    response = client.post(path, content=chunks(), headers=JSON_HEADERS)

    clean_4xx(response, 413)


@pytest.mark.parametrize("path", PREDICT)
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deep_nesting_is_a_422_not_a_recursion_error(client: httpx.Client, path: str, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    depth = (MAX_BODY_BYTES - 16) // (
        len(opener) + 1
    )  # thousands deep, past any recursion limit, within the body limit
    response = client.post(path, content=opener * depth + b"1" + closer * depth, headers=JSON_HEADERS)

    clean_4xx(response, 422)
    assert response.json()["detail"][0]["type"] == "json_depth"


def test_brackets_inside_strings_do_not_count_as_nesting(client: httpx.Client) -> None:
    text = "[" * (MAX_JSON_DEPTH * 4) + "{" * (MAX_JSON_DEPTH * 4)

    ok(client.post("/predict_sync", json={"text": text}))


# -- odd unicode --------------------------------------------------------------------------------------------------

ODD_TEXTS = [
    "\u0000 NUL escaped in JSON",
    "\u202e RTL override \u202c and \u200f RTL mark",
    "emoji 😀🔥 and a family 👨‍👩‍👧",
    "combining a\u0301\u0301\u0301\u0301",
    "zero width \u200b\u200c\u200d\ufeff",
    "\uffff non-character and \U0010ffff the last code point",
    "line\u2028separator\u2029paragraph",
    "\U0001d573\U0001d58a\U0001d591\U0001d591\U0001d594 mathematical fraktur letters",
]


@pytest.mark.parametrize("text", ODD_TEXTS, ids=range(len(ODD_TEXTS)))
def test_odd_but_valid_unicode_is_served(client: httpx.Client, text: str) -> None:
    response = client.post("/predict_sync", json={"text": text})

    ok(response)
    assert response.json()["status"] == "success"


@pytest.mark.parametrize(
    "escape", [b"\\ud800", b"\\udfff", b"\\ud83d\\u0041", b"\\ud83d", b"\\u12", b"\\x41", b"\\uZZZZ"]
)
def test_lone_surrogates_and_bad_escapes_are_a_422(client: httpx.Client, escape: bytes) -> None:
    response = client.post("/predict_sync", content=b'{"text": "a ' + escape + b' b"}', headers=JSON_HEADERS)

    clean_4xx(response, 422)


# -- query parameters ---------------------------------------------------------------------------------------------

JUNK_MODEL_NAMES = ["-1", "0", "-99999999999999999999", "1e308", "1e999", "NaN", "", "%00", "\u202evader", "../vader"]


@pytest.mark.parametrize("path", PREDICT)
@pytest.mark.parametrize("name", JUNK_MODEL_NAMES)
def test_junk_model_names_are_a_404(client: httpx.Client, path: str, name: str) -> None:
    response = client.post(path, params={"model_name": name}, json={"text": "hi"})

    clean_4xx(response, 404, 422)


@pytest.mark.parametrize(
    "query",
    [
        "model_name=%ff%fe",
        "model_name=" + "a" * 20_000,
        "model_name",
        "model_name=vader%00",
        "model_name=<script>alert(1)</script>",
        "model_name=" + "b" * 5000 + "&model_name=vader",
    ],
)
def test_malformed_model_names_are_a_bounded_404(client: httpx.Client, query: str) -> None:
    response = client.post(f"/predict_sync?{query}", json={"text": "hi"})

    clean_4xx(response, 404)
    assert len(response.content) < 2000, "the answer does not echo an unbounded query"


@pytest.mark.parametrize(
    "query",
    ["limit=-1", "offset=1e9999", "page=99999999999999999999999", "x=%00&y=NaN", "model_name[]=x", "%zz=%", "&&=&"],
)
def test_unknown_query_parameters_are_ignored(client: httpx.Client, query: str) -> None:
    ok(client.post(f"/predict_sync?{query}", json={"text": "hi"}))
    ok(client.get(f"/health?{query}"))


# -- job ids ------------------------------------------------------------------------------------------------------

TRAVERSALS = [
    "..%2f..%2fetc%2fpasswd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..%5c..%5cwindows%5cwin.ini",
    "....//....//etc/passwd",
    "%00",
    "a%0d%0aSet-Cookie:%20x=1",
    "%ff%fe",
    "%c0%ae%c0%ae%c0%af",
    "x" * 5000,
    "' OR '1'='1",
    "*",
]


@pytest.mark.parametrize("job_id", TRAVERSALS, ids=range(len(TRAVERSALS)))
def test_path_traversal_in_job_ids_is_a_404(client: httpx.Client, job_id: str) -> None:
    response = client.get(f"/jobs/{job_id}")

    clean_4xx(response, 404)
    assert "root:" not in response.text
    assert "set-cookie" not in response.headers


# -- request ids --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        b"a" * 129,
        b"a" * 100_000,
        b"caf\xc3\xa9",
        b"\xff\xfe",
        b"a b",
        b'"quoted"',
        b"<script>",
        b"id%0d%0aSet-Cookie:%20x=1",
        b"tab\there",
    ],
    ids=range(9),
)
def test_an_unsafe_request_id_is_replaced_not_echoed(sentiment: ServedProcess, given: bytes) -> None:
    for path in (b"/health", b"/jobs/nope", b"/predict_sync"):
        body = b'{"text": "hi"}'
        method = b"POST" if path == b"/predict_sync" else b"GET"
        request = (
            method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
            b"X-Request-Id: " + given + b"\r\n\r\n" + body
        )
        status, headers, _ = raw_exchange(sentiment.port, request)
        _seen["requests"] += 1
        assert status in (200, 404)
        echoed = headers[b"x-request-id"]
        assert echoed != given
        assert SAFE_ID.fullmatch(echoed.decode("ascii"))


def test_a_sane_request_id_is_echoed(client: httpx.Client) -> None:
    response = client.get("/health", headers={"x-request-id": "trace-0123:abc/def+1=@x"})

    ok(response)
    assert response.headers["x-request-id"] == "trace-0123:abc/def+1=@x"


@pytest.mark.parametrize(
    "header_line",
    [
        b"X-Request-Id: abc\rSet-Cookie: x=1",
        b"X-Request-Id: abc\nSet-Cookie: x=1",
        b"X-Request-Id: abc\r\n Set-Cookie: x=1",  # obsolete line folding
        b"X-Request-Id: abc\x00def",
    ],
    ids=["CR", "LF", "fold", "NUL"],
)
def test_cr_lf_in_a_request_id_never_reaches_a_response_header(sentiment: ServedProcess, header_line: bytes) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + header_line + b"\r\n\r\n"

    status, headers, body = raw_exchange(sentiment.port, request)

    _seen["requests"] += 1
    # uvicorn's parser refuses the request before the app sees it (plain-text 400), or the app replaces the id.
    assert status in (200, 400)
    assert b"set-cookie" not in headers
    assert b"Traceback" not in body
    if status == 200:
        assert SAFE_ID.fullmatch(headers[b"x-request-id"].decode("ascii"))


def test_the_server_logged_no_unhandled_error(sentiment: ServedProcess, client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200
    no_unhandled_errors(sentiment)


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send raw bytes, read the answer until the server closes (bounded by a socket timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks: list[bytes] = []
        for _ in range(10_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
