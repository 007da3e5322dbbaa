"""The two benchmark models as modalkit pipelines (same request/response JSON as the bare and LitServe servers)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sim_models import SimulatedAccelerator, text_lengths

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError


class TextInput(BaseModel):
    text: str


class LengthOutput(InferenceOutputModel):
    length: int


class TrivialPipeline(InferencePipeline[TextInput, LengthOutput]):
    """Microseconds of work per batch: what is left to measure is the serving layer."""

    def preprocess(self, input_list: list[TextInput]) -> dict[str, Any]:
        return {"texts": [item.text for item in input_list]}

    def predict(self, input_list: list[TextInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {"lengths": text_lengths(preprocessed_data["texts"])}

    def postprocess(self, input_list: list[TextInput], raw_output: dict[str, Any]) -> list[LengthOutput | ItemError]:
        return [LengthOutput(length=n) for n in raw_output["lengths"]]


class AccelPipeline(TrivialPipeline):
    """The simulated accelerator: 20 ms + 0.5 ms per item, one batch at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accelerator = SimulatedAccelerator()

    def predict(self, input_list: list[TextInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {"lengths": self.accelerator.run(preprocessed_data["texts"])}
