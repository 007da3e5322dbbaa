"""The result message: the output JSON object plus job_id (and meta), and reading the job id back."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from modalkit_queue import job_id_of, result_message


class Output(BaseModel):
    status: str = "success"
    error: str | None = None
    label: str
    score: float


def test_message_is_the_output_object_plus_job_id_and_meta() -> None:
    text = result_message(Output(label="positive", score=0.9), "job-1", meta={"user": 7})
    assert json.loads(text) == {
        "status": "success",
        "error": None,
        "label": "positive",
        "score": 0.9,
        "job_id": "job-1",
        "meta": {"user": 7},
    }
    assert job_id_of(text) == "job-1"


def test_without_meta_the_outputs_fields_are_left_alone() -> None:
    text = result_message({"status": "error", "error": "boom", "meta": {"kept": True}}, "job-2")
    assert json.loads(text) == {"status": "error", "error": "boom", "meta": {"kept": True}, "job_id": "job-2"}


def test_the_job_id_argument_wins_over_an_output_field() -> None:
    assert job_id_of(result_message({"job_id": "stale"}, "fresh")) == "fresh"


def test_unicode_is_kept_as_text() -> None:
    text = result_message({"label": "héllo ✓"}, "job-3")
    assert "héllo ✓" in text


@pytest.mark.parametrize("bad", ["", None, 3])
def test_job_id_must_be_a_non_empty_string(bad: object) -> None:
    with pytest.raises(TypeError, match="job_id must be a non-empty string"):
        result_message({}, bad)  # type: ignore[arg-type]


def test_output_must_be_a_model_or_mapping() -> None:
    with pytest.raises(TypeError, match="pydantic model or a mapping"):
        result_message(["not", "a", "mapping"], "job")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"job_id": 5}', '{"other": "x"}', b"\xff"])
def test_job_id_of_is_none_when_there_is_no_string_job_id(text: str | bytes) -> None:
    assert job_id_of(text) is None
