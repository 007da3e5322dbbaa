"""The OCR service as a real `modalkit serve` process, over loopback HTTP (port 0, stopped by PID)."""

from __future__ import annotations

import base64
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from images import text_image

from modalkit.testing import ModalkitServer

pytestmark = pytest.mark.e2e

APP = Path(__file__).resolve().parent.parent / "app.py"
CONFIG = APP.parent / "modalkit.yaml"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModalkitServer]:
    with ModalkitServer(APP, config=CONFIG, log_dir=tmp_path_factory.mktemp("ocr")) as served:
        yield served


@pytest.fixture
def client(server: ModalkitServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def test_an_uploaded_image_is_read(client: httpx.Client) -> None:
    response = client.post("/predict_sync", json={"image": b64(text_image(["Total due: 42.50 EUR"]))})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["text"] == "Total due: 42.50 EUR"
    assert len(body["lines"][0]["box"]) == 4


def test_a_batch_where_one_file_is_not_an_image(client: httpx.Client) -> None:
    images = [b64(text_image(["page one"])), b64(b"GIF89a garbage"), b64(text_image(["page three"], fmt="JPEG"))]
    response = client.post("/predict_batch", json=[{"image": image} for image in images])

    assert response.status_code == 200
    results = response.json()
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert results[0]["text"] == "page one"
    assert results[1]["kind"] == "input"
    assert "not an image file" in results[1]["error"]
    assert results[2]["text"] == "page three"


def test_bad_base64_is_a_422_that_names_the_field(client: httpx.Client) -> None:
    response = client.post("/predict_sync", json={"image": "this is not base64!"})

    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"][-1] == "image"
    assert "base64" in detail["msg"]


def test_a_body_over_the_limit_is_a_413(client: httpx.Client) -> None:
    response = client.post("/predict_sync", json={"image": "A" * (17 * 1024 * 1024)})

    assert response.status_code == 413


def test_concurrent_uploads_are_batched(client: httpx.Client, server: ModalkitServer) -> None:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    bodies = [{"image": b64(text_image([f"{w} {i}"]))} for i, w in enumerate(words * 2)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: httpx.post(f"{server.url}/predict_sync", json=b, timeout=120).json(), bodies))

    assert [a["text"] for a in answers] == [f"{w} {i}" for i, w in enumerate(words * 2)]
    metrics = client.get("/metrics").text
    total = next(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("modalkit_batch_size_sum"))
    count = next(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("modalkit_batch_size_count"))
    assert total > count  # some batch held more than one image
