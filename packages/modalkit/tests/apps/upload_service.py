"""``modalkit serve`` app file for a pipeline that takes an image file (multipart upload or base64 JSON)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from pydantic import BaseModel

from modalkit_pipeline import Binary, InferenceOutputModel, InferencePipeline, ItemError, accepts
from modalkit_serve import ServiceSpec


class Photo(BaseModel):
    image: Annotated[Binary, accepts("image/png", "image/jpeg")]
    caption: str = ""


class Described(InferenceOutputModel):
    size: int
    sha256: str
    caption: str


class Describe(InferencePipeline[Photo, Described]):
    def preprocess(self, input_list: list[Photo]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[Photo], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[Photo], raw_output: dict[str, Any]) -> list[Described | ItemError]:
        return [
            Described(size=len(p.image), sha256=hashlib.sha256(p.image).hexdigest(), caption=p.caption)
            for p in input_list
        ]


service = ServiceSpec(Describe)
