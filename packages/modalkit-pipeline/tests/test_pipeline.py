"""Behaviour of the pipeline contract: the three stages, per-item errors, count checks, I/O model discovery."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from modalkit_pipeline import (
    InferenceOutputModel,
    InferencePipeline,
    ItemError,
    OutputCountError,
    PipelineError,
    failed_indices,
)


class Text(BaseModel):
    text: str


class Length(InferenceOutputModel):
    length: int


class LengthPipeline(InferencePipeline[Text, Length]):
    def __init__(self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], **kwargs: Any):
        super().__init__(model_name, all_model_data_folder, common_settings, **kwargs)
        self.reloads = 0

    def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
        return {"texts": [item.text.strip() for item in input_list]}

    def predict(self, input_list: list[Text], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {"lengths": [len(t) for t in preprocessed_data["texts"]]}

    def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Length | ItemError]:
        return [
            self.item_error("text is empty", index=i) if n == 0 else Length(status="success", length=n)
            for i, n in enumerate(raw_output["lengths"])
        ]

    def on_volume_reload(self) -> None:
        self.reloads += 1


def make(**kwargs: Any) -> LengthPipeline:
    return LengthPipeline(model_name="m", all_model_data_folder="/models", common_settings={"device": "cpu"}, **kwargs)


def test_constructor_keeps_the_earlier_modalkit_arguments() -> None:
    p = make(threshold=0.5)
    assert p.model_name == "m"
    assert p.all_model_data_folder == "/models"
    assert p.common_settings == {"device": "cpu"}
    assert p.model_kwargs == {"threshold": 0.5}


def test_run_inference_runs_the_three_stages_in_order() -> None:
    out = make().run_inference([Text(text=" ab "), Text(text="abcd")])
    assert [o.length for o in out if isinstance(o, Length)] == [2, 4]


def test_one_item_can_fail_without_failing_its_batch() -> None:
    out = make().run_inference([Text(text="ab"), Text(text="   "), Text(text="c")])
    assert failed_indices(out) == [1]
    assert isinstance(out[1], ItemError)
    assert out[1].status == "error"
    assert out[1].error == "text is empty"
    assert out[1].kind == "input"  # item_error() reports a problem with the input, not with the service
    assert isinstance(out[0], Length)
    assert out[0].length == 2


def test_failed_indices_also_sees_outputs_with_error_status() -> None:
    results = [Length(status="success", length=1), InferenceOutputModel(status="error", error="bad")]
    assert failed_indices(results) == [1]


class WrongCount(LengthPipeline):
    def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Length | ItemError]:
        return [Length(status="success", length=1)]


def test_output_count_mismatch_names_the_pipeline_and_both_counts() -> None:
    p = WrongCount(model_name="m", all_model_data_folder=".", common_settings={})
    with pytest.raises(OutputCountError) as info:
        p.run_inference([Text(text="a"), Text(text="b"), Text(text="c")])
    message = str(info.value)
    assert "WrongCount" in message
    assert "1 output" in message
    assert "3 input" in message
    assert isinstance(info.value, PipelineError)
    assert info.value.expected == 3
    assert info.value.got == 1


def test_empty_batch_runs_the_three_stages_on_the_empty_list() -> None:
    # As in the earlier modalkit: a pipeline may count or log batches, so an empty one is still a batch.
    seen: list[str] = []

    class Recording(LengthPipeline):
        def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
            seen.append(f"preprocess {len(input_list)}")
            return super().preprocess(input_list)

        def predict(self, input_list: list[Text], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
            seen.append(f"predict {len(input_list)}")
            return super().predict(input_list, preprocessed_data)

        def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Length | ItemError]:
            seen.append(f"postprocess {len(input_list)}")
            return super().postprocess(input_list, raw_output)

    p = Recording(model_name="m", all_model_data_folder=".", common_settings={})
    assert p.run_inference([]) == []
    assert seen == ["preprocess 0", "predict 0", "postprocess 0"]


def test_on_volume_reload_defaults_to_a_no_op_and_can_be_overridden() -> None:
    p = make()
    p.on_volume_reload()
    assert p.reloads == 1

    class Plain(InferencePipeline[Text, Length]):
        def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
            return {}

        def predict(self, input_list: list[Text], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
            return {}

        def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Length | ItemError]:
            return [Length(status="success", length=0) for _ in input_list]

    Plain(model_name="m", all_model_data_folder=".", common_settings={}).on_volume_reload()


def test_io_models_are_read_from_the_generic_parameters() -> None:
    assert LengthPipeline.io_models() == (Text, Length)
    assert WrongCount.io_models() == (Text, Length)


def test_io_models_of_an_unparameterised_pipeline_is_a_clear_error() -> None:
    class Untyped(InferencePipeline):  # type: ignore[type-arg]
        def preprocess(self, input_list: list[Any]) -> dict[str, Any]:
            return {}

        def predict(self, input_list: list[Any], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
            return {}

        def postprocess(self, input_list: list[Any], raw_output: dict[str, Any]) -> list[Any]:
            return []

    with pytest.raises(PipelineError, match=r"Untyped.*InferencePipeline\[InputModel, OutputModel\]"):
        Untyped.io_models()


def test_abstract_stages_must_be_implemented() -> None:
    class Incomplete(InferencePipeline[Text, Length]):
        def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match="predict"):
        Incomplete(model_name="m", all_model_data_folder=".", common_settings={})  # type: ignore[abstract]


def test_is_failure_is_the_one_test_of_a_failed_result() -> None:
    from pydantic import BaseModel

    from modalkit_pipeline import InferenceOutputModel, ItemError, failed_indices, is_failure

    class Plain(BaseModel):
        x: int = 0

    ok = InferenceOutputModel()
    refused = ItemError(error="no", kind="input")
    flagged = InferenceOutputModel(status="error", error="upstream said no")
    assert [is_failure(r) for r in (ok, refused, flagged, Plain(), None)] == [False, True, True, False, False]
    assert failed_indices([ok, refused, Plain(), flagged]) == [1, 3]
