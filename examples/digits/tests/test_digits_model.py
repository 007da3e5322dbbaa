"""The digits pipeline on its own: training, the two versions, per-item errors and the volume-reload hook."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from digits_model import (
    ArtifactError,
    DigitImage,
    DigitPrediction,
    DigitsPipeline,
    held_out,
    load_artifact,
    save_artifact,
    train,
)

from modalkit_pipeline import ItemError
from modalkit_pipeline.testing import run_pipeline

BLANK = [[0] * 8 for _ in range(8)]


def build(folder: Path, artifact: str, **entry: Any) -> DigitsPipeline:
    """The pipeline as the server builds it for one model entry."""
    return DigitsPipeline("digits", str(folder), {}, artifact=artifact, **entry)


def predict(pipeline: DigitsPipeline, images: list[list[list[int]]]) -> list[DigitPrediction | ItemError]:
    return pipeline.run_inference([DigitImage(pixels=image) for image in images])


def test_the_two_recipes_are_two_different_models(trained: Path) -> None:
    v1, v2 = load_artifact(trained / "v1.joblib"), load_artifact(trained / "v2.joblib")

    assert (v1["recipe"], v1["trained_on"]) == ("v1", 500)
    assert (v2["recipe"], v2["trained_on"]) == ("v2", 1500)
    assert type(v1["model"]).__name__ != type(v2["model"]).__name__
    # Both are scored on the same held-out images, never seen in training; v2 is the better model.
    assert 0.5 < v1["accuracy"] < v2["accuracy"] <= 1.0


def test_v2_reads_held_out_digits(trained: Path) -> None:
    images, labels = held_out(60)
    pipeline = build(trained, "v2.joblib")

    results = predict(pipeline, images)

    assert all(isinstance(r, DigitPrediction) and r.model_version == "v2" for r in results)
    correct = sum(r.digit == label for r, label in zip(results, labels, strict=True) if isinstance(r, DigitPrediction))
    assert correct >= 54  # 90%: the recipe scores about 96% on the held-out set
    assert all(0.0 <= r.confidence <= 1.0 for r in results if isinstance(r, DigitPrediction))


def test_two_model_entries_serve_two_versions(trained: Path) -> None:
    images, _ = held_out(3)

    folder = str(trained)
    [old] = run_pipeline(
        DigitsPipeline, [{"pixels": images[0]}], model_entry={"artifact": "v1.joblib"}, model_folder=folder
    )
    [new] = run_pipeline(
        DigitsPipeline, [{"pixels": images[0]}], model_entry={"artifact": "v2.joblib"}, model_folder=folder
    )

    assert isinstance(old, DigitPrediction)
    assert isinstance(new, DigitPrediction)
    assert (old.model_version, new.model_version) == ("v1", "v2")


def test_a_blank_image_fails_alone(trained: Path) -> None:
    images, labels = held_out(2)

    results = predict(build(trained, "v2.joblib"), [images[0], BLANK, images[1]])

    assert isinstance(results[1], ItemError)
    assert results[1].error == "the image is blank (every pixel is 0): nothing to classify"
    assert [r.digit for r in (results[0], results[2]) if isinstance(r, DigitPrediction)] == labels[:2]


@pytest.mark.parametrize(
    ("pixels", "where"),
    [
        ([[0] * 8 for _ in range(7)], "pixels"),  # 7 rows
        ([[0] * 8 for _ in range(7)] + [[0] * 7], "pixels"),  # a short row
        ([[17] * 8 for _ in range(8)], "pixels.0.0"),  # brighter than the scanner's 16
    ],
)
def test_an_image_must_be_8_by_8_pixels_of_0_to_16(pixels: list[list[int]], where: str) -> None:
    with pytest.raises(ValueError, match=f"input 0 is not a valid DigitImage: {where}"):
        run_pipeline(DigitsPipeline, [{"pixels": pixels}], model_entry={"artifact": "unused.joblib"})


def test_replacing_the_artifact_and_calling_the_reload_hook_switches_the_model(trained: Path, tmp_path: Path) -> None:
    shutil.copy(trained / "v1.joblib", tmp_path / "digits.joblib")
    pipeline = build(tmp_path, "digits.joblib")
    images, _ = held_out(1)
    assert [r.model_version for r in predict(pipeline, images) if isinstance(r, DigitPrediction)] == ["v1"]

    # What `modal volume put` (or train.py) does on the volume: a new file takes the old one's place.
    save_artifact(load_artifact(trained / "v2.joblib"), tmp_path / "digits.joblib")
    assert [r.model_version for r in predict(pipeline, images) if isinstance(r, DigitPrediction)] == ["v1"]
    pipeline.on_volume_reload()

    assert [r.model_version for r in predict(pipeline, images) if isinstance(r, DigitPrediction)] == ["v2"]


def test_a_reload_without_a_new_file_keeps_the_loaded_model(trained: Path) -> None:
    pipeline = build(trained, "v1.joblib")
    loaded = pipeline.model

    pipeline.on_volume_reload()

    assert pipeline.model is loaded


def test_a_broken_new_artifact_is_refused_and_the_old_model_keeps_serving(trained: Path, tmp_path: Path) -> None:
    shutil.copy(trained / "v1.joblib", tmp_path / "digits.joblib")
    pipeline = build(tmp_path, "digits.joblib")
    (tmp_path / "digits.joblib").write_bytes(b"half an upload")

    with pytest.raises(ArtifactError, match=r"digits\.joblib: cannot load it .*still serving v1"):
        pipeline.on_volume_reload()

    images, _ = held_out(1)
    assert [r.model_version for r in predict(pipeline, images) if isinstance(r, DigitPrediction)] == ["v1"]


def test_a_missing_artifact_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"digits\.joblib: no such artifact; run `python train.py`"):
        build(tmp_path, "digits.joblib")


def test_a_missing_artifact_is_trained_at_start_up_when_asked(tmp_path: Path) -> None:
    pipeline = DigitsPipeline("digits", str(tmp_path), {"train_if_missing": True}, artifact="d.joblib", recipe="v1")

    assert load_artifact(tmp_path / "d.joblib")["recipe"] == "v1"
    images, _ = held_out(1)
    assert [r.model_version for r in predict(pipeline, images) if isinstance(r, DigitPrediction)] == ["v1"]


def test_something_that_is_not_an_artifact_is_refused(tmp_path: Path) -> None:
    fake = {"format": 1, "recipe": "v1", "model": "not a model", "trained_on": 1, "accuracy": 0.0}
    save_artifact(fake, tmp_path / "x.joblib")

    with pytest.raises(ArtifactError, match=r"x\.joblib: not a digits artifact"):
        load_artifact(tmp_path / "x.joblib")


def test_an_unknown_recipe_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown recipe 'v9' \(known: v1, v2\)"):
        train("v9")


def test_declared_models() -> None:
    assert DigitsPipeline.io_models() == (DigitImage, DigitPrediction)
