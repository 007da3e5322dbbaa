"""A ServiceSpec app file with no Modal objects, for benchmarks/startup.py."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from modalkit_config import settings_from_dict
from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_serve import ServiceSpec


class Text(BaseModel):
    text: str


class Length(InferenceOutputModel):
    length: int


class LengthPipeline(InferencePipeline[Text, Length]):
    def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[Text], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Length | ItemError]:
        return [Length(length=len(i.text)) for i in input_list]


service = ServiceSpec(
    LengthPipeline,
    settings=settings_from_dict(
        {"app_settings": {"app_prefix": "length"}, "model_settings": {"model_entries": {"length": {}}}}
    ),
)
