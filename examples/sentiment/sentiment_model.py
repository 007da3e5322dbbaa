"""A real sentiment model that runs offline: VADER (the vaderSentiment package ships its lexicon).

VADER scores a text with a hand-built lexicon and rules (negation, intensifiers, punctuation, emoji), so it
needs no download and no GPU, yet gives sensible answers: a good first model to serve.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError


class TextInput(BaseModel):
    """One text to score."""

    text: str = Field(min_length=1, max_length=5000, examples=["modalkit makes serving models easy and fun"])
    """The text, up to 5000 characters."""


class SentimentOutput(InferenceOutputModel):
    """The sentiment of one text."""

    label: Literal["positive", "negative", "neutral"]
    """``positive`` or ``negative`` when the compound score passes the threshold, else ``neutral``."""
    compound: float
    """VADER's normalised score, from -1 (most negative) to 1 (most positive)."""
    positive: float
    """Share of the text that reads positive (0 to 1)."""
    negative: float
    """Share of the text that reads negative (0 to 1)."""
    neutral: float
    """Share of the text that reads neutral (0 to 1)."""


class SentimentPipeline(InferencePipeline[TextInput, SentimentOutput]):
    """VADER over a batch of texts.

    Model entry settings:
        threshold: How far from 0 the compound score must be for a non-neutral label (VADER's authors use 0.05).
    """

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        self.threshold = float(kwargs.get("threshold", 0.05))
        self.analyzer = SentimentIntensityAnalyzer()

    def preprocess(self, input_list: list[TextInput]) -> dict[str, Any]:
        return {"texts": [item.text.strip() for item in input_list]}

    def predict(self, input_list: list[TextInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        texts: list[str] = preprocessed_data["texts"]
        return {"scores": [self.analyzer.polarity_scores(text) if text else None for text in texts]}

    def postprocess(self, input_list: list[TextInput], raw_output: dict[str, Any]) -> list[SentimentOutput | ItemError]:
        results: list[SentimentOutput | ItemError] = []
        for index, scores in enumerate(raw_output["scores"]):
            if scores is None:
                # Whitespace passes the length check but holds nothing to score: this item fails, not the batch.
                results.append(self.item_error("text is blank: nothing to score", index=index))
                continue
            compound = float(scores["compound"])
            label: Literal["positive", "negative", "neutral"] = "neutral"
            if compound >= self.threshold:
                label = "positive"
            elif compound <= -self.threshold:
                label = "negative"
            results.append(
                SentimentOutput(
                    label=label,
                    compound=compound,
                    positive=float(scores["pos"]),
                    negative=float(scores["neg"]),
                    neutral=float(scores["neu"]),
                )
            )
        return results
