"""File uploads over real HTTP against ``modalkit serve``: a multipart upload of an image and the same image as
base64 JSON give the same result; a file over ``server_config.max_file_bytes`` gets 413 before the server has
read the whole body; a file of a type the field does not take gets 415."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from modalkit.testing import ModalkitServer, serving

from .conftest import APPS, FIXTURES

GUARD = 30.0
# A real (tiny) PNG: 1x1 pixel.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalkitServer]:
    folder = tmp_path_factory.mktemp("upload-e2e")
    with serving(APPS / "upload_service.py", config=FIXTURES / "upload.yaml", cwd=folder) as served:
        yield served


@pytest.mark.e2e
def test_a_multipart_upload_and_a_base64_body_give_the_same_result(server: ModalkitServer) -> None:
    uploaded = httpx.post(
        f"{server.url}/predict_sync",
        files={"image": ("pixel.png", PNG, "image/png")},
        data={"caption": "one pixel"},
        timeout=GUARD,
    )
    status, as_json = server.post("/predict_sync", {"image": base64.b64encode(PNG).decode(), "caption": "one pixel"})
    assert uploaded.status_code == 200, uploaded.text
    assert status == 200
    assert uploaded.json() == as_json
    assert as_json["sha256"] == hashlib.sha256(PNG).hexdigest()


def _read_until_closed(conn: socket.socket) -> bytes:
    """The whole answer: its head and body may arrive in separate reads, and the server closes after it."""
    received = b""
    while True:
        try:
            data = conn.recv(65536)
        except ConnectionResetError:  # closed with our unsent body unread: what came before is the answer
            return received
        if not data:
            return received
        received += data


@pytest.mark.e2e
def test_an_oversized_file_gets_413_before_the_whole_body_is_sent(server: ModalkitServer) -> None:
    boundary = "xYzBoundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    total = len(head) + 4_000_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=GUARD) as conn:
        conn.sendall(
            (
                f"POST /predict_sync HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n"
            ).encode()
            + head
            + b"\0" * 300_000  # past the 200 kB file limit; 3.7 MB of the body are never sent
        )
        answer = _read_until_closed(conn).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "max_file_bytes" in answer


@pytest.mark.e2e
def test_a_file_of_another_type_gets_415(server: ModalkitServer) -> None:
    response = httpx.post(
        f"{server.url}/predict_sync", files={"image": ("a.gif", b"GIF89a", "image/gif")}, timeout=GUARD
    )
    assert response.status_code == 415
    assert "image/png" in response.json()["detail"]
