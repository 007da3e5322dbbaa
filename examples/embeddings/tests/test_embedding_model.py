"""The MiniLM pipeline on its own, through modalkit_pipeline.testing (no server): real weights, real tokenizer."""

from __future__ import annotations

import math

from embedding_model import EmbeddingOutput, EmbeddingPipeline

from modalkit_pipeline import ItemError
from modalkit_pipeline.testing import run_pipeline

CORPUS = {
    "corpus": [
        "Paris is the capital of France.",
        "Batching groups requests into one model call.",
        "The cat sat on the mat.",
    ],
    "top_k": 2,
}


def test_embeddings_are_unit_vectors_of_384() -> None:
    [out] = run_pipeline(EmbeddingPipeline, [{"text": "hello world"}], model_entry=CORPUS)

    assert isinstance(out, EmbeddingOutput)
    assert len(out.embedding) == 384
    assert math.isclose(sum(x * x for x in out.embedding), 1.0, rel_tol=1e-4)


def test_semantic_search_finds_the_meaning_not_the_words() -> None:
    results = run_pipeline(
        EmbeddingPipeline,
        [{"text": "Which city is France's capital?"}, {"text": "a kitten resting on a rug"}],
        model_entry=CORPUS,
    )

    france, kitten = results
    assert isinstance(france, EmbeddingOutput)
    assert isinstance(kitten, EmbeddingOutput)
    assert france.matches[0].text == "Paris is the capital of France."
    assert kitten.matches[0].text == "The cat sat on the mat."
    assert len(france.matches) == 2
    assert france.matches[0].score > france.matches[1].score


def test_a_batch_gives_what_each_text_gives_alone() -> None:
    texts = ["short", "a much longer sentence that pads the others in its batch with many more tokens"]
    together = run_pipeline(EmbeddingPipeline, [{"text": t} for t in texts], model_entry=CORPUS)
    alone = [run_pipeline(EmbeddingPipeline, [{"text": t}], model_entry=CORPUS)[0] for t in texts]

    for a, b in zip(together, alone, strict=True):
        assert isinstance(a, EmbeddingOutput)
        assert isinstance(b, EmbeddingOutput)
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding, strict=True)) < 1e-4


def test_a_blank_text_fails_alone() -> None:
    results = run_pipeline(EmbeddingPipeline, [{"text": "fine"}, {"text": "   "}], model_entry=CORPUS)

    assert isinstance(results[0], EmbeddingOutput)
    assert isinstance(results[1], ItemError)
    assert results[1].error == "text is blank: nothing to embed"
    assert results[1].kind == "input"
