"""The testing helper lets a model repository test its pipeline with no server and no config file."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError, OutputCountError
from modalkit_pipeline.testing import run_pipeline


class Text(BaseModel):
    text: str


class Upper(InferenceOutputModel):
    upper: str


class UpperPipeline(InferencePipeline[Text, Upper]):
    def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
        return {"suffix": self.model_kwargs.get("suffix", "")}

    def predict(self, input_list: list[Text], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {"out": [t.text.upper() + preprocessed_data["suffix"] for t in input_list]}

    def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Upper | ItemError]:
        return [Upper(status="success", upper=u) if u.strip() else self.item_error("blank") for u in raw_output["out"]]


def test_run_pipeline_accepts_dicts_and_models_and_model_entry_kwargs() -> None:
    out = run_pipeline(UpperPipeline, [{"text": "ab"}, Text(text="c")], model_entry={"suffix": "!"})
    assert [o.upper for o in out if isinstance(o, Upper)] == ["AB!", "C!"]


def test_run_pipeline_reports_bad_input_with_its_index_and_field() -> None:
    with pytest.raises(ValueError, match=r"input 1.*text"):
        run_pipeline(UpperPipeline, [{"text": "ok"}, {"txt": "typo"}])


def test_run_pipeline_returns_item_errors_in_place() -> None:
    out = run_pipeline(UpperPipeline, [{"text": "a"}, {"text": " "}])
    assert isinstance(out[1], ItemError)


def test_run_pipeline_checks_the_output_count() -> None:
    class Short(UpperPipeline):
        def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Upper | ItemError]:
            return []

    with pytest.raises(OutputCountError):
        run_pipeline(Short, [{"text": "a"}])


def test_run_pipeline_checks_output_types() -> None:
    class WrongType(UpperPipeline):
        def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Any]:
            return [{"upper": "A"} for _ in input_list]

    with pytest.raises(TypeError, match=r"WrongType.*output 0.*Upper"):
        run_pipeline(WrongType, [{"text": "a"}])
