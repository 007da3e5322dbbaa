"""The VADER pipeline on its own, through modalkit_pipeline.testing (no server)."""

from __future__ import annotations

import pytest
from sentiment_model import SentimentOutput, SentimentPipeline, TextInput

from modalkit_pipeline import ItemError
from modalkit_pipeline.testing import run_pipeline


def test_labels_follow_the_text() -> None:
    results = run_pipeline(
        SentimentPipeline,
        [{"text": "I love this, it is wonderful!"}, {"text": "This is terrible and I hate it."}, {"text": "A table."}],
    )

    assert [r.label for r in results if isinstance(r, SentimentOutput)] == ["positive", "negative", "neutral"]
    assert all(-1.0 <= r.compound <= 1.0 for r in results if isinstance(r, SentimentOutput))


def test_a_blank_text_fails_alone() -> None:
    results = run_pipeline(SentimentPipeline, [{"text": "great"}, {"text": "   "}])

    assert isinstance(results[0], SentimentOutput)
    assert isinstance(results[1], ItemError)
    assert results[1].error == "text is blank: nothing to score"
    assert results[1].kind == "input"  # the input is at fault: /predict_sync answers 422


def test_the_threshold_comes_from_the_model_entry() -> None:
    [strict] = run_pipeline(SentimentPipeline, [{"text": "ok good"}], model_entry={"threshold": 0.99})

    assert isinstance(strict, SentimentOutput)
    assert strict.label == "neutral"


def test_input_limits() -> None:
    with pytest.raises(ValueError, match="text"):
        run_pipeline(SentimentPipeline, [{"text": ""}])
    assert TextInput(text="x" * 5000).text


def test_declared_models() -> None:
    assert SentimentPipeline.io_models() == (TextInput, SentimentOutput)
