"""A real pretrained vision model that runs offline: PP-OCRv4 text detection and recognition, ONNX, on onnxruntime.

The weights ship on PyPI inside ``rapidocr-onnxruntime`` (PP-OCRv4 mobile detection and recognition, and the
PP-OCR direction classifier, exported to ONNX; Apache-2.0). A request carries an image file (PNG, JPEG, WebP,
BMP or TIFF) as base64 in JSON; the answer is every line of text found, with its confidence and its box in
pixels, top to bottom.

Each image is decoded and checked in ``preprocess``: a file that is not an image, or too large, fails alone
(the other images of the batch are read). ``predict`` runs detection, then recognition of every line found.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from rapidocr_onnxruntime import RapidOCR

from modalkit_pipeline import Binary, InferenceOutputModel, InferencePipeline, ItemError

MAX_SIDE = 4096
"""Largest image side accepted, in pixels (detection runs on the image scaled to at most ``det_side`` anyway)."""
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")


class ImageInput(BaseModel):
    """One image to read text from."""

    image: Binary = Field(description="The image file (PNG, JPEG, WebP, BMP or TIFF), base64 in JSON.")
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="Leave out lines recognised with less confidence.")


class TextLine(BaseModel):
    """One line of text in the image."""

    text: str
    score: float
    """Recognition confidence, 0 to 1."""
    box: list[list[float]]
    """The line's four corners, ``[x, y]`` in pixels, clockwise from the top left."""


class OcrOutput(InferenceOutputModel):
    """The text found in one image."""

    text: str
    """Every line, top to bottom, joined by newlines."""
    lines: list[TextLine]
    width: int
    height: int


def decode_image(data: bytes) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """An RGB array of an image file's pixels.

    Raises:
        ValueError: the bytes are not an image in one of `FORMATS`, or the image is larger than `MAX_SIDE`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise ValueError(f"image format {image.format} is not accepted (use one of {', '.join(FORMATS)})")
            if max(image.size) > MAX_SIDE:
                size = f"{image.width}x{image.height}"
                raise ValueError(f"image is {size} pixels; the largest side allowed is {MAX_SIDE}")
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ValueError("not an image file (expected PNG, JPEG, WebP, BMP or TIFF bytes)") from None
    except OSError as exc:  # truncated or corrupt file
        raise ValueError(f"the image file is damaged: {exc}") from None


class OcrPipeline(InferencePipeline[ImageInput, OcrOutput]):
    """PP-OCRv4 over a batch of images.

    Model entry settings:
        det_side: Detection runs on the image scaled so its longer side is at most this (default 960).
        model_dir: A folder with the three ONNX files (default: the ones ``rapidocr-onnxruntime`` installs).
        threads: onnxruntime threads per model call (default 1: the batch thread is the unit of parallelism).
    """

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        threads = int(kwargs.get("threads", 1))
        options: dict[str, Any] = {
            "det_limit_type": "max",
            "det_limit_side_len": int(kwargs.get("det_side", 960)),
            "intra_op_num_threads": threads,
            "inter_op_num_threads": threads,
        }
        if kwargs.get("model_dir"):
            folder = Path(str(kwargs["model_dir"]))
            options["det_model_path"] = str(folder / "ch_PP-OCRv4_det_infer.onnx")
            options["rec_model_path"] = str(folder / "ch_PP-OCRv4_rec_infer.onnx")
            options["cls_model_path"] = str(folder / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
        self.engine = RapidOCR(**options)

    def preprocess(self, input_list: list[ImageInput]) -> dict[str, Any]:
        images: list[np.ndarray[Any, np.dtype[np.uint8]] | str] = []
        for item in input_list:
            try:
                images.append(decode_image(item.image))
            except ValueError as exc:
                images.append(str(exc))  # this item's error; the others still run
        return {"images": images}

    def predict(self, input_list: list[ImageInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        found: list[list[Any] | str] = []
        for image in preprocessed_data["images"]:
            if isinstance(image, str):
                found.append(image)
                continue
            result, _elapsed = self.engine(image)
            found.append(result or [])
        return {"found": found, "sizes": [getattr(i, "shape", (0, 0))[:2] for i in preprocessed_data["images"]]}

    def postprocess(self, input_list: list[ImageInput], raw_output: dict[str, Any]) -> list[OcrOutput | ItemError]:
        results: list[OcrOutput | ItemError] = []
        for i, (item, found, (height, width)) in enumerate(
            zip(input_list, raw_output["found"], raw_output["sizes"], strict=True)
        ):
            if isinstance(found, str):
                results.append(self.item_error(found, index=i))
                continue
            lines = [
                TextLine(text=text, score=round(float(score), 4), box=[[float(x), float(y)] for x, y in box])
                for box, text, score in found
                if float(score) >= item.min_score
            ]
            lines.sort(key=lambda line: (line.box[0][1], line.box[0][0]))
            text = "\n".join(line.text for line in lines)
            results.append(OcrOutput(text=text, lines=lines, width=width, height=height))
        return results
