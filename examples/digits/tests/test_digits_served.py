"""The digits service served: two versions side by side, a reload through the running service, the CLI."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from digits_model import DigitImage, held_out, load_artifact

from modalkit import SyncInputModel, local_app

EXAMPLE = Path(__file__).resolve().parent.parent
APP = EXAMPLE / "app.py"
CONFIG = EXAMPLE / "modalkit.yaml"
FOLDER_ENV = "MODALKIT_MODEL_SETTINGS__LOCAL_MODEL_REPOSITORY_FOLDER"


@pytest.fixture
def models(trained: Path, tmp_path: Path) -> Path:
    """A model folder holding both entries' artifacts (copies: tests may replace them)."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(trained / "v1.joblib", folder / "digits_v1.joblib")
    shutil.copy(trained / "v2.joblib", folder / "digits_v2.joblib")
    return folder


@pytest.fixture
async def served(models: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app `modalkit serve app.py` serves, in this process (lifespan run), and its LocalRunner."""
    monkeypatch.setenv("MODALKIT_CONFIG", str(CONFIG))
    monkeypatch.setenv(FOLDER_ENV, str(models))
    app = local_app(APP, config=str(CONFIG))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://digits") as client,
    ):
        runner = app.state.runner
        assert await runner.wait_ready()
        yield client, runner


async def versions(client: httpx.AsyncClient, image: list[list[int]]) -> dict[str, str]:
    answers = {}
    for model in ("digits_v1", "digits_v2"):
        response = await client.post(f"/predict_sync?model_name={model}", json={"pixels": image})
        assert response.status_code == 200, response.text
        answers[model] = response.json()["model_version"]
    return answers


async def test_two_versions_are_served_side_by_side(served: tuple[httpx.AsyncClient, Any]) -> None:
    client, _ = served
    images, labels = held_out(20)

    assert await versions(client, images[0]) == {"digits_v1": "v1", "digits_v2": "v2"}
    batch = await client.post("/predict_batch?model_name=digits_v2", json=[{"pixels": image} for image in images])
    assert batch.status_code == 200
    assert sum(r["digit"] == label for r, label in zip(batch.json(), labels, strict=True)) >= 18

    missing = await client.post("/predict_sync", json={"pixels": images[0]})  # two models: say which
    assert missing.status_code == 422
    assert "pass ?model_name= one of: digits_v1, digits_v2" in missing.text
    assert (await client.post("/predict_sync?model_name=digits_v3", json={"pixels": images[0]})).status_code == 404


async def test_replacing_an_artifact_and_reloading_switches_the_running_model(
    served: tuple[httpx.AsyncClient, Any], models: Path, trained: Path
) -> None:
    client, runner = served
    images, _ = held_out(1)
    assert await versions(client, images[0]) == {"digits_v1": "v1", "digits_v2": "v2"}

    # Promote v2 into digits_v1's file, as `python train.py --model digits_v1 --recipe v2` does.
    shutil.copy(trained / "v2.joblib", models / ".incoming")
    (models / ".incoming").replace(models / "digits_v1.joblib")
    # What ModalService does after reloading the volumes: the worker calls the hook between batches.
    assert await asyncio.to_thread(runner.worker("digits_v1").on_volume_reload)

    assert await versions(client, images[0]) == {"digits_v1": "v2", "digits_v2": "v2"}


async def test_a_broken_upload_is_refused_and_the_service_keeps_answering(
    served: tuple[httpx.AsyncClient, Any], models: Path
) -> None:
    client, runner = served
    images, _ = held_out(1)
    (models / "digits_v1.joblib").write_bytes(b"half an upload")

    assert not await asyncio.to_thread(runner.worker("digits_v1").on_volume_reload)

    assert await versions(client, images[0]) == {"digits_v1": "v1", "digits_v2": "v2"}
    assert (await client.get("/ready")).status_code == 200


async def test_an_input_that_is_not_an_8_by_8_image_is_a_422_naming_the_field(
    served: tuple[httpx.AsyncClient, Any],
) -> None:
    client, _ = served

    response = await client.post("/predict_sync?model_name=digits_v1", json={"pixels": [[0] * 8] * 7})

    assert response.status_code == 422
    assert "pixels" in response.text


def test_the_batched_modal_method_runs_offline(
    models: Path, monkeypatch: pytest.MonkeyPatch, import_app: Callable[[], Any]
) -> None:
    """The class Modal runs, called with ``.local()``: no Modal account, same pipeline and worker."""
    monkeypatch.setenv(FOLDER_ENV, str(models))
    module = import_app()
    images, labels = held_out(2)
    requests = [SyncInputModel[DigitImage](message=DigitImage(pixels=image)) for image in images]

    results = module.DigitsService(model_name="digits_v2").process_request.local(requests)

    assert [(r.digit, r.model_version) for r in results] == [(label, "v2") for label in labels]


@pytest.mark.e2e
def test_modalkit_serve_trains_missing_artifacts_at_start_up(serving: Callable[..., Any], tmp_path: Path) -> None:
    folder = tmp_path / "fresh-models"
    images, labels = held_out(1)

    with serving(APP, cwd=tmp_path, env={FOLDER_ENV: str(folder)}) as server:
        status_v1, v1 = server.post("/predict_sync?model_name=digits_v1", {"pixels": images[0]})
        status_v2, v2 = server.post("/predict_sync?model_name=digits_v2", {"pixels": images[0]})
        status_blank, blank = server.post("/predict_sync?model_name=digits_v2", {"pixels": [[0] * 8] * 8})

    assert (status_v1, v1["model_version"], status_v2, v2["model_version"]) == (200, "v1", 200, "v2")
    assert v2["digit"] == labels[0]
    assert (status_blank, blank["detail"][0]["msg"]) == (
        422,
        "the image is blank (every pixel is 0): nothing to classify",
    )
    assert load_artifact(folder / "digits_v1.joblib")["recipe"] == "v1"
    assert load_artifact(folder / "digits_v2.joblib")["recipe"] == "v2"


def test_train_script_fills_the_model_folder_and_promotes_a_recipe(
    train_script: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_script.main(["--config", str(CONFIG), "--folder", str(tmp_path)]) == 0
    assert load_artifact(tmp_path / "digits_v1.joblib")["recipe"] == "v1"

    promote = ["--config", str(CONFIG), "--folder", str(tmp_path), "--model", "digits_v1", "--recipe", "v2"]
    assert train_script.main(promote) == 0

    assert load_artifact(tmp_path / "digits_v1.joblib")["recipe"] == "v2"
    out = capsys.readouterr().out
    assert "digits_v1: recipe v2 (KNeighborsClassifier on 1500 images), held-out accuracy 0.9" in out


def test_train_script_names_an_unknown_model(
    train_script: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_script.main(["--config", str(CONFIG), "--folder", str(tmp_path), "--model", "digits_v9"]) == 2

    assert "no model entry 'digits_v9' (known: digits_v1, digits_v2)" in capsys.readouterr().err


@pytest.mark.e2e
def test_modalkit_serve_from_another_folder_keeps_the_models_beside_the_config(
    serving: Callable[..., Any], tmp_path: Path
) -> None:
    example = tmp_path / "example"
    example.mkdir()
    for name in ("app.py", "digits_model.py", "modalkit.yaml"):
        shutil.copy(EXAMPLE / name, example / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    images, _ = held_out(1)

    with serving(example / "app.py", cwd=elsewhere) as server:
        status, _ = server.post("/predict_sync?model_name=digits_v1", {"pixels": images[0]})

    assert status == 200
    assert not (elsewhere / "models").exists()
    assert sorted(p.name for p in (example / "models").iterdir()) == ["digits_v1.joblib", "digits_v2.joblib"]
