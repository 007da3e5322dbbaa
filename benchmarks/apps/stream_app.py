"""A simulated token model for the streaming benchmark: every step costs STEP_SECONDS for the whole batch
(as one forward pass of an LLM does), and each prompt streams TOKENS tokens."""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Any

from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, ItemError, StreamingPipeline
from modalkit_serve import ServiceSpec

STEP_SECONDS = 0.01
TOKENS = 32


class Prompt(BaseModel):
    text: str


class Token(BaseModel):
    token: str


class Completion(InferenceOutputModel):
    text: str


class SimulatedLLM(StreamingPipeline[Prompt, Token, Completion]):
    def preprocess(self, input_list: list[Prompt]) -> dict[str, Any]:
        return {}

    def predict_stream(
        self, input_list: list[Prompt], preprocessed_data: dict[str, Any]
    ) -> Generator[Sequence[Token | ItemError | None], frozenset[int], None]:
        for step in range(TOKENS):
            time.sleep(STEP_SECONDS)
            yield [Token(token=f"t{step}") for _ in input_list]

    def join_chunks(self, item: Prompt, chunks: list[Token]) -> Completion:
        return Completion(text=" ".join(c.token for c in chunks))


service = ServiceSpec(SimulatedLLM)
