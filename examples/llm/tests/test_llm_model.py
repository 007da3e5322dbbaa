"""The LLM pipeline on its own (no server): a real tokenizer file and ONNX file, loaded and run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from llm_model import Completion, LLMPipeline, Prompt, Token
from pydantic import ValidationError

from modalkit_pipeline.testing import run_pipeline

EXAMPLE = Path(__file__).resolve().parent.parent
ENTRY: dict[str, Any] = yaml.safe_load((EXAMPLE / "modalkit.yaml").read_text())["model_settings"]["model_entries"][
    "bigram"
]


@pytest.fixture(scope="module")
def pipeline() -> LLMPipeline:
    return LLMPipeline("bigram", "", {}, **ENTRY)


def test_greedy_generation_follows_the_commonest_word_pairs(pipeline: LLMPipeline) -> None:
    [out] = pipeline.run_inference([Prompt(text="The server streams each", temperature=0.0, max_tokens=4)])

    assert isinstance(out, Completion)
    assert out.text == " token to the model"  # "the model" is the commonest pair after "the"
    assert (out.tokens, out.finish_reason) == (4, "length")


def test_a_sampled_stream_stops_at_the_end_of_text_token_after_a_sentence(pipeline: LLMPipeline) -> None:
    outs = pipeline.run_inference([Prompt(text="A model", seed=s, max_tokens=300, temperature=1.0) for s in range(8)])

    stopped = [o for o in outs if isinstance(o, Completion) and o.finish_reason == "stop"]
    assert stopped
    assert all(o.tokens < 300 and o.text.endswith(".") for o in stopped)  # the corpus ends with a period


def test_one_model_step_advances_every_stream_of_the_batch(pipeline: LLMPipeline) -> None:
    prompts = [Prompt(text=t, max_tokens=6, seed=i) for i, t in enumerate(["A model", "The client", "Batching"])]
    before = pipeline.steps
    events = list(pipeline.run_stream(prompts))

    tokens = {i: [e.index for j, e in events if j == i and isinstance(e, Token)] for i in range(3)}
    assert pipeline.steps - before <= 7  # 6 tokens each plus at most one step that ends them, not 3 x 6
    assert all(idx == list(range(len(idx))) for idx in tokens.values())
    assert sorted(j for j, e in events if e is None) == [0, 1, 2]


def test_a_batch_gives_what_each_prompt_gives_alone(pipeline: LLMPipeline) -> None:
    prompts = [Prompt(text="The cloud", seed=3, max_tokens=12), Prompt(text="A language model", seed=9)]
    together = pipeline.run_inference(prompts)
    alone = [pipeline.run_inference([p])[0] for p in prompts]

    assert together == alone
    assert isinstance(together[1], Completion)
    assert together[1].tokens > 0


def test_the_same_seed_gives_the_same_text_and_another_seed_differs(pipeline: LLMPipeline) -> None:
    runs = [pipeline.run_inference([Prompt(text="The", seed=s, max_tokens=20, temperature=1.5)])[0] for s in (1, 1, 2)]

    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_blank_prompt_is_refused_with_its_reason() -> None:
    with pytest.raises(ValidationError, match="text is blank: nothing to continue"):
        Prompt(text="   ")


def test_a_model_entry_without_a_corpus_says_so() -> None:
    with pytest.raises(ValueError, match="model entry 'empty' has no corpus"):
        run_pipeline(LLMPipeline, [{"text": "x"}], model_name="empty", model_entry={})
