"""A pipeline's declared entry arguments (its constructor's keywords, or `entry_model`) check a model entry."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError


class Text(BaseModel):
    text: str


class Score(InferenceOutputModel):
    score: float


class _Base(InferencePipeline[Text, Score]):
    def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[Text], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[Score | ItemError]:
        return [Score(score=1.0) for _ in input_list]


class Declared(_Base):
    def __init__(
        self,
        model_name: str,
        all_model_data_folder: str,
        common_settings: dict[str, Any],
        *,
        weights: str,
        threshold: float = 0.5,
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, weights=weights, threshold=threshold)


class Open(_Base):
    """Takes **kwargs: it declares nothing, so anything goes (the earlier modalkit's form)."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore")
    weights: str
    threshold: float = 0.5


class Modelled(_Base):
    entry_model: ClassVar[type[BaseModel] | None] = Settings


def test_a_typo_in_a_declared_keyword_is_reported_with_a_did_you_mean() -> None:
    problems = Declared.entry_problems({"wieghts": "w.bin"})
    assert [path for path, _ in problems] == [("wieghts",), ()]
    unknown, missing = (message for _, message in problems)
    assert "unknown argument" in unknown
    assert "did you mean 'weights'?" in unknown
    assert "threshold, weights" in unknown
    assert "'weights'" in missing
    assert "required" in missing


def test_a_good_entry_has_no_problems_and_builds() -> None:
    assert Declared.entry_problems({"weights": "w.bin", "threshold": 0.9}) == []
    assert Declared("m", ".", {}, weights="w.bin").model_kwargs == {"weights": "w.bin", "threshold": 0.5}


def test_the_arguments_modalkit_passes_itself_are_not_entry_keys() -> None:
    (problem,) = Declared.entry_problems({"weights": "w", "model_name": "other"})
    assert problem[0] == ("model_name",)
    assert "set by modalkit" in problem[1]


def test_a_pipeline_that_takes_any_keyword_declares_nothing() -> None:
    assert Open.entry_problems({"anything": 1, "wieghts": "x"}) == []


def test_an_entry_model_checks_names_and_values() -> None:
    problems = Modelled.entry_problems({"wieghts": "w.bin", "threshold": "high"})
    paths = sorted(path for path, _ in problems)
    assert paths == [(), ("threshold",), ("wieghts",)]
    messages = dict(problems)
    assert "did you mean 'weights'?" in messages[("wieghts",)]
    assert "number" in messages[("threshold",)]
    assert Modelled.entry_problems({"weights": "w.bin"}) == []


def test_the_entry_model_instance_is_kept_on_the_pipeline() -> None:
    pipeline = Modelled("m", ".", {}, weights="w.bin", threshold="0.7")
    assert pipeline.entry == Settings(weights="w.bin", threshold=0.7)
    assert Open("m", ".", {}, x=1).entry is None
