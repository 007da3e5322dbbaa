"""A streaming pipeline for the end-to-end stream tests: one token per step for every prompt of the batch.

``Prompt(text, n, release)`` streams ``n`` tokens ``"<text>-<k>"``. With ``release`` (a file path), the model
waits for that file before the last token, so a test can prove it read the first chunks before the last existed.
The model entry's ``step_seconds`` is the cost of one step (for the whole batch).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from modalkit_pipeline import InferenceOutputModel, ItemError, StreamingPipeline


class Prompt(BaseModel):
    text: str = Field(min_length=1, max_length=100)
    n: int = Field(default=3, ge=0, le=1_000_000)
    release: str | None = None


class Token(BaseModel):
    token: str


class Completion(InferenceOutputModel):
    text: str


class TokenStream(StreamingPipeline[Prompt, Token, Completion]):
    batch_sizes: ClassVar[list[int]] = []
    """The size of every batch this process streamed (tests read it to see streams share batches)."""

    def __init__(self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], **kwargs: Any):
        super().__init__(model_name, all_model_data_folder, common_settings, **kwargs)
        self.step_seconds = float(kwargs.get("step_seconds", 0.0))

    def preprocess(self, input_list: list[Prompt]) -> dict[str, Any]:
        type(self).batch_sizes.append(len(input_list))
        return {}

    def predict_stream(
        self, input_list: list[Prompt], preprocessed_data: dict[str, Any]
    ) -> Generator[Sequence[Token | ItemError | None], frozenset[int], None]:
        cancelled: frozenset[int] = frozenset()
        for step in range(max(p.n for p in input_list)):
            for i, p in enumerate(input_list):
                if p.release and step == p.n - 1 and i not in cancelled:
                    while not os.path.exists(p.release):
                        threading.Event().wait(0.01)
            if self.step_seconds:
                threading.Event().wait(self.step_seconds)
            cancelled = yield [
                Token(token=f"{p.text}-{step}") if step < p.n and i not in cancelled else None
                for i, p in enumerate(input_list)
            ]

    def join_chunks(self, item: Prompt, chunks: list[Token]) -> Completion:
        return Completion(text=" ".join(c.token for c in chunks))
