"""Behaviour of the streaming contract: steps that advance the whole batch, per-stream end and errors,
cancellation sent back into the model's loop, and the joined output that non-streaming routes get."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from modalkit_pipeline import (
    InferenceOutputModel,
    ItemError,
    PipelineError,
    StreamContractError,
    StreamingPipeline,
)
from modalkit_pipeline.testing import run_pipeline, stream_pipeline


class Prompt(BaseModel):
    text: str
    max_tokens: int = 3


class Token(BaseModel):
    token: str


class Completion(InferenceOutputModel):
    text: str


class EchoTokens(StreamingPipeline[Prompt, Token, Completion]):
    """Emits each input's words one per step; every step is one call over the whole batch."""

    def __init__(self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], **kw: Any):
        super().__init__(model_name, all_model_data_folder, common_settings, **kw)
        self.steps = 0
        self.cancelled_seen: list[frozenset[int]] = []

    def preprocess(self, input_list: list[Prompt]) -> dict[str, Any]:
        return {"words": [item.text.split()[: item.max_tokens] for item in input_list]}

    def predict_stream(
        self, input_list: list[Prompt], preprocessed_data: dict[str, Any]
    ) -> Generator[Sequence[Token | ItemError | None], frozenset[int], None]:
        words: list[list[str]] = preprocessed_data["words"]
        step = 0
        while any(step < len(w) for w in words):
            self.steps += 1
            cancelled = yield [
                self.item_error("boom")
                if step < len(w) and w[step] == "BAD"
                else (Token(token=w[step]) if step < len(w) else None)
                for w in words
            ]
            self.cancelled_seen.append(cancelled)
            words = [[] if i in cancelled else w for i, w in enumerate(words)]
            step += 1

    def join_chunks(self, item: Prompt, chunks: list[Token]) -> Completion:
        return Completion(text=" ".join(c.token for c in chunks))


def test_the_models_are_declared_with_the_chunk_model() -> None:
    assert EchoTokens.io_models() == (Prompt, Completion)
    assert EchoTokens.chunk_model() is Token
    assert EchoTokens.is_streaming()


def test_each_step_advances_every_stream_and_ends_each_on_its_own() -> None:
    events = list(stream_pipeline(EchoTokens, [{"text": "a b c"}, {"text": "x"}]))
    assert events == [
        (0, Token(token="a")),
        (1, Token(token="x")),
        (0, Token(token="b")),
        (1, None),
        (0, Token(token="c")),
        (0, None),
    ]


def test_an_item_error_ends_that_stream_alone() -> None:
    events = list(stream_pipeline(EchoTokens, [{"text": "a BAD c"}, {"text": "x y"}]))
    by_item: dict[int, list[Any]] = {0: [], 1: []}
    for i, ev in events:
        by_item[i].append(ev)
    assert by_item[0][0] == Token(token="a")
    assert isinstance(by_item[0][1], ItemError)
    assert by_item[0][1].error == "boom"
    assert len(by_item[0]) == 2  # nothing after the error
    assert by_item[1] == [Token(token="x"), Token(token="y"), None]


def test_cancelled_streams_are_sent_back_into_the_model_loop() -> None:
    pipeline = EchoTokens("m", ".", {})
    stream = pipeline.run_stream([Prompt(text="a b c d", max_tokens=9), Prompt(text="x y z w", max_tokens=9)])
    got = [next(stream), next(stream), next(stream)]  # step 0 for both, then step 1 for item 0
    got.append(stream.send(frozenset({1})))  # item 1 is cancelled during step 1
    got.extend(stream)
    assert pipeline.cancelled_seen[0] == frozenset()
    assert pipeline.cancelled_seen[1] == frozenset({1})
    # after cancelling item 1, no more chunks for it, and the model stopped working on it (no more steps needed)
    assert got[:3] == [(0, Token(token="a")), (1, Token(token="x")), (0, Token(token="b"))]
    assert [i for i, _ in got[3:]] == [0, 0, 0]
    assert pipeline.steps == 4


def test_run_inference_joins_the_chunks_for_non_streaming_routes() -> None:
    outs = run_pipeline(EchoTokens, [{"text": "a b c"}, {"text": "a BAD"}, {"text": ""}])
    assert outs[0] == Completion(text="a b c")
    assert isinstance(outs[1], ItemError)
    assert outs[1].error == "boom"
    assert outs[2] == Completion(text="")


def test_a_step_of_the_wrong_length_is_a_contract_error() -> None:
    class Short(EchoTokens):
        def predict_stream(self, input_list: list[Prompt], preprocessed_data: dict[str, Any]) -> Any:
            yield [Token(token="only one")]

    with pytest.raises(StreamContractError, match="1 entry for 2 inputs"):
        list(stream_pipeline(Short, [{"text": "a"}, {"text": "b"}]))


def test_a_chunk_of_the_wrong_type_is_a_contract_error() -> None:
    class Wrong(EchoTokens):
        def predict_stream(self, input_list: list[Prompt], preprocessed_data: dict[str, Any]) -> Any:
            yield [Completion(text="no")]

    with pytest.raises(StreamContractError, match="expected Token, ItemError or None"):
        list(stream_pipeline(Wrong, [{"text": "a"}]))


def test_a_streaming_class_without_its_chunk_model_says_how_to_declare_it() -> None:
    class Bare(StreamingPipeline):  # type: ignore[type-arg]
        def preprocess(self, input_list: list[Any]) -> dict[str, Any]:
            return {}

        def predict_stream(self, input_list: list[Any], preprocessed_data: dict[str, Any]) -> Any:
            yield []

        def join_chunks(self, item: Any, chunks: list[Any]) -> Any:
            return None

    with pytest.raises(PipelineError, match=r"StreamingPipeline\[InputModel, ChunkModel, OutputModel\]"):
        Bare.chunk_model()


def test_a_plain_pipeline_is_not_streaming() -> None:
    from modalkit_pipeline import InferencePipeline

    assert not InferencePipeline.is_streaming()


def test_run_steps_hands_over_each_model_call_as_one_step_and_computes_nothing_ahead() -> None:
    pipeline = EchoTokens("m", ".", {})
    steps = pipeline.run_steps([Prompt(text="a b c"), Prompt(text="x")])
    assert next(steps) == [(0, Token(token="a")), (1, Token(token="x"))]
    assert pipeline.steps == 1  # the next model call waits for the caller
    assert steps.send(frozenset()) == [(0, Token(token="b")), (1, None)]
    assert pipeline.steps == 2
    assert list(steps) == [[(0, Token(token="c"))], [(0, None)]]


def test_run_steps_tells_the_model_which_streams_were_cancelled_and_drops_their_entries() -> None:
    pipeline = EchoTokens("m", ".", {})
    steps = pipeline.run_steps([Prompt(text="a b c"), Prompt(text="x y z")])
    assert next(steps) == [(0, Token(token="a")), (1, Token(token="x"))]
    assert steps.send(frozenset({1})) == [(0, Token(token="b"))]
    assert pipeline.cancelled_seen == [frozenset({1})]
    assert list(steps) == [[(0, Token(token="c"))], [(0, None)]]
    assert pipeline.cancelled_seen[-1] == frozenset({1})  # the set the model gets is cumulative
