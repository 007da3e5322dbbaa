"""A handwritten-digit classifier trained with scikit-learn, served from an artifact file in the model folder.

The data is scikit-learn's bundled digits set (1,797 scans of 8x8 pixels, values 0..16; no download). Two
recipes make two model versions: ``v1`` (Gaussian naive Bayes on the first 500 images) and ``v2`` (3-nearest
neighbours on the first 1,500). Both are scored on the last 297 images, which neither saw in training.

An artifact is a joblib file holding the fitted model and what it was trained on. The pipeline loads it from
``all_model_data_folder`` (``model_settings.local_model_repository_folder``) and loads it again in
``on_volume_reload`` when the file was replaced, so a new version goes live without a restart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypedDict

import joblib  # type: ignore[import-untyped]
import numpy as np
from pydantic import BaseModel, Field
from sklearn.datasets import load_digits  # type: ignore[import-untyped]
from sklearn.naive_bayes import GaussianNB  # type: ignore[import-untyped]
from sklearn.neighbors import KNeighborsClassifier  # type: ignore[import-untyped]

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError

ARTIFACT_FORMAT = 1
HELD_OUT_START = 1500
"""Images from here on are never trained on: every recipe is scored on them."""

#: Recipe name -> (how many of the first images it trains on, the estimator).
RECIPES: dict[str, tuple[int, Callable[[], Any]]] = {
    "v1": (500, GaussianNB),
    "v2": (1500, lambda: KNeighborsClassifier(n_neighbors=3)),
}

Pixel = Annotated[int, Field(ge=0, le=16)]
Row = Annotated[list[Pixel], Field(min_length=8, max_length=8)]

_A_ZERO = [
    [0, 0, 5, 13, 9, 1, 0, 0],
    [0, 0, 13, 15, 10, 15, 5, 0],
    [0, 3, 15, 2, 0, 11, 8, 0],
    [0, 4, 12, 0, 0, 8, 8, 0],
    [0, 5, 8, 0, 0, 9, 8, 0],
    [0, 4, 11, 0, 1, 12, 7, 0],
    [0, 2, 14, 5, 10, 12, 0, 0],
    [0, 0, 6, 13, 10, 0, 0, 0],
]


class ArtifactError(RuntimeError):
    """An artifact file is missing, unreadable, or not a digits model."""


class Artifact(TypedDict):
    """What an artifact file holds."""

    format: int
    recipe: str
    model: Any
    trained_on: int
    accuracy: float


class DigitImage(BaseModel):
    """One 8x8 greyscale scan of a handwritten digit."""

    pixels: Annotated[list[Row], Field(min_length=8, max_length=8, examples=[_A_ZERO])]
    """Eight rows of eight pixels, each 0 (white) to 16 (black), as in scikit-learn's digits data set."""


class DigitPrediction(InferenceOutputModel):
    """The digit a model read."""

    digit: int
    """The most likely digit, 0 to 9."""
    confidence: float
    """The model's probability for that digit (0 to 1)."""
    model_version: str
    """The recipe of the artifact that answered (``v1``, ``v2``): shows which file is live."""


def held_out(count: int | None = None) -> tuple[list[list[list[int]]], list[int]]:
    """Images no recipe trains on, and their labels: ``count`` of them (all 297 by default)."""
    data = load_digits()
    end = None if count is None else HELD_OUT_START + count
    images = data.images[HELD_OUT_START:end].astype(int).tolist()
    labels = [int(y) for y in data.target[HELD_OUT_START:end]]
    return images, labels


def train(recipe: str) -> Artifact:
    """Fit one recipe on the bundled data and score it on the held-out images (well under a second).

    Raises:
        ValueError: no such recipe.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r} (known: {', '.join(RECIPES)})")
    size, make = RECIPES[recipe]
    data = load_digits()
    features, labels = data.data, data.target
    model = make().fit(features[:size], labels[:size])
    accuracy = float(model.score(features[HELD_OUT_START:], labels[HELD_OUT_START:]))
    return Artifact(format=ARTIFACT_FORMAT, recipe=recipe, model=model, trained_on=size, accuracy=accuracy)


def save_artifact(artifact: Mapping[str, Any], path: Path) -> None:
    """Write an artifact so that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            joblib.dump(dict(artifact), out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_artifact(path: Path) -> Artifact:
    """Read and check an artifact file.

    joblib files are pickles: load only artifacts you produced (here: train.py, into your own volume).

    Raises:
        ArtifactError: the file is missing, unreadable, or not a digits artifact.
    """
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact; run `python train.py` to create it")
    try:
        loaded = joblib.load(path)
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot load it ({type(exc).__name__}: {exc})") from exc
    if (
        not isinstance(loaded, dict)
        or loaded.get("format") != ARTIFACT_FORMAT
        or not hasattr(loaded.get("model"), "predict_proba")
    ):
        raise ArtifactError(f"{path}: not a digits artifact (expected what train.py writes)")
    artifact: Artifact = loaded  # type: ignore[assignment]  # checked just above
    return artifact


class DigitsPipeline(InferencePipeline[DigitImage, DigitPrediction]):
    """Reads handwritten digits with the model in one artifact file.

    Model entry settings:
        artifact: The artifact's file name inside the model folder.
        recipe: The recipe to train when the file is missing and ``train_if_missing`` is on (default ``v2``).

    Common settings:
        train_if_missing: Train the recipe at start-up when the artifact is missing (default off: fail).
    """

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        self.artifact_path = Path(all_model_data_folder) / str(kwargs["artifact"])
        if not self.artifact_path.exists() and common_settings.get("train_if_missing", False):
            save_artifact(train(str(kwargs.get("recipe", "v2"))), self.artifact_path)
        # Fingerprint before loading: a file replaced while it loads is then loaded again at the next reload.
        fingerprint = _fingerprint(self.artifact_path)
        self._use(load_artifact(self.artifact_path), fingerprint)

    def _use(self, artifact: Artifact, fingerprint: tuple[int, ...] | None) -> None:
        self.model: Any = artifact["model"]
        self.version = artifact["recipe"]
        self._fingerprint = fingerprint

    def on_volume_reload(self) -> None:
        """Load the artifact again if the file changed. A broken new file raises; the old model keeps serving.

        Raises:
            ArtifactError: the new file cannot be used (the serving layer logs it and keeps this model).
        """
        fingerprint = _fingerprint(self.artifact_path)
        if fingerprint == self._fingerprint:
            return
        try:
            artifact = load_artifact(self.artifact_path)
        except ArtifactError as exc:
            raise ArtifactError(f"{exc}; still serving {self.version}") from exc
        self._use(artifact, fingerprint)

    def preprocess(self, input_list: list[DigitImage]) -> dict[str, Any]:
        features = np.asarray([item.pixels for item in input_list], dtype=np.float64).reshape(len(input_list), 64)
        return {"features": features, "blank": ~features.any(axis=1)}

    def predict(self, input_list: list[DigitImage], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        features: np.ndarray[Any, Any] = preprocessed_data["features"]
        keep = ~preprocessed_data["blank"]
        probabilities = np.zeros((len(input_list), len(self.model.classes_)))
        if keep.any():
            probabilities[keep] = self.model.predict_proba(features[keep])
        return {"probabilities": probabilities, "blank": preprocessed_data["blank"]}

    def postprocess(
        self, input_list: list[DigitImage], raw_output: dict[str, Any]
    ) -> list[DigitPrediction | ItemError]:
        results: list[DigitPrediction | ItemError] = []
        classes = self.model.classes_
        for index, (row, blank) in enumerate(zip(raw_output["probabilities"], raw_output["blank"], strict=True)):
            if blank:
                # Every model "reads" some digit in a white square; saying so is more useful than guessing.
                results.append(
                    self.item_error("the image is blank (every pixel is 0): nothing to classify", index=index)
                )
                continue
            best = int(np.argmax(row))
            results.append(
                DigitPrediction(digit=int(classes[best]), confidence=float(row[best]), model_version=self.version)
            )
        return results


def _fingerprint(path: Path) -> tuple[int, ...] | None:
    """Identity of the file's current content as the filesystem sees it (a replaced file gets a new inode)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
