"""The I/O models keep the earlier modalkit's names, fields and strictness."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from modalkit_pipeline import (
    AsyncInputModel,
    AsyncOutputModel,
    DelayedFailureOutputModel,
    InferenceOutputModel,
    ItemError,
    SyncInputModel,
)


class Text(BaseModel):
    text: str


def test_sync_input_wraps_a_message_and_forbids_extra_keys() -> None:
    assert SyncInputModel[Text].model_validate({"message": {"text": "hi"}}).message == Text(text="hi")
    with pytest.raises(ValidationError, match="extra"):
        SyncInputModel[Text].model_validate({"message": {"text": "hi"}, "other": 1})


def test_async_input_has_queues_and_meta_and_forbids_extra_keys() -> None:
    item = AsyncInputModel[Text].model_validate(
        {"message": {"text": "hi"}, "success_queue": "ok", "failure_queue": "bad", "meta": {"trace": "t1"}}
    )
    assert (item.success_queue, item.failure_queue, item.meta) == ("ok", "bad", {"trace": "t1"})
    defaults = AsyncInputModel[Text].model_validate({"message": {"text": "hi"}})
    assert (defaults.success_queue, defaults.failure_queue, defaults.meta) == ("", "", {})
    with pytest.raises(ValidationError) as info:
        AsyncInputModel[Text].model_validate({"message": {"text": "hi"}, "succes_queue": "typo"})
    assert info.value.errors()[0]["loc"] == ("succes_queue",)


def test_async_input_validates_the_nested_message() -> None:
    with pytest.raises(ValidationError) as info:
        AsyncInputModel[Text].model_validate({"message": {"txt": "hi"}})
    locs = [e["loc"] for e in info.value.errors()]
    assert ("message", "text") in locs


def test_inference_output_allows_extra_keys() -> None:
    out = InferenceOutputModel.model_validate({"status": "success", "label": "pos"})
    assert out.model_dump() == {"status": "success", "error": None, "label": "pos"}


def test_async_output_carries_the_job_id() -> None:
    assert AsyncOutputModel(job_id="abc").model_dump() == {"job_id": "abc"}


def test_delayed_failure_keeps_the_original_message() -> None:
    original = AsyncInputModel[Text](message=Text(text="x"), failure_queue="f", meta={"k": 1})
    failure = DelayedFailureOutputModel(status="error", error="boom", original_message=original)
    dumped = failure.model_dump(mode="json")
    assert dumped["original_message"]["message"] == {"text": "x"}
    assert dumped["original_message"]["meta"] == {"k": 1}


def test_item_error_is_an_error_output() -> None:
    err = ItemError(error="bad input", index=3)
    assert err.status == "error"
    assert isinstance(err, InferenceOutputModel)
    assert err.model_dump()["error"] == "bad input"
    with pytest.raises(ValidationError):
        ItemError.model_validate({"error": "x", "status": "success"})


def test_an_item_error_is_about_the_input_unless_marked_internal() -> None:
    assert ItemError(error="bad input").kind == "input"
    assert ItemError(error="ValueError: boom", kind="internal").kind == "internal"
    with pytest.raises(ValidationError) as info:
        ItemError(error="x", kind="server")
    assert info.value.errors()[0]["loc"] == ("kind",)


def test_an_item_error_serialises_its_kind_and_reads_back_without_one() -> None:
    err = ItemError(error="boom", index=1, kind="internal")
    assert err.model_dump(mode="json") == {"status": "error", "error": "boom", "index": 1, "kind": "internal"}
    assert ItemError.model_validate_json(err.model_dump_json()) == err
    # What an earlier version sent (no kind): a pipeline's own verdict on the input.
    assert ItemError.model_validate({"status": "error", "error": "x", "index": 0}).kind == "input"
