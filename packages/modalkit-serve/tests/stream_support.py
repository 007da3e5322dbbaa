"""A streaming toy pipeline for the /predict_stream tests: tokens one per step, every step one call over the batch.

``Prompt(text, n)`` streams ``n`` tokens ``"<text>-0"``, ``"<text>-1"``, ... Texts with a meaning:

- ``refuse``: the first step ends that stream with ``self.item_error(...)``.
- ``fail``: the model raises at the second step (the whole batch's streams end with an error).
- ``block``: the first step waits until ``pipeline.gate`` is set (tests clear it to hold the model busy).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from typing import Any

from pydantic import BaseModel, Field

from modalkit_pipeline import InferenceOutputModel, ItemError, StreamingPipeline


class Prompt(BaseModel):
    """What to stream."""

    text: str = Field(min_length=1, max_length=100)
    n: int = Field(default=3, ge=0, le=100_000)


class Token(BaseModel):
    """One chunk."""

    token: str


class Completion(InferenceOutputModel):
    """The joined tokens."""

    text: str


class TokenStream(StreamingPipeline[Prompt, Token, Completion]):
    """Records the size of every batch it streams, its steps, and the cancellations it was told about."""

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        self.batches: list[int] = []
        self.steps = 0
        self.cancelled: list[frozenset[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.step_seconds = float(kwargs.get("step_seconds", 0.0))

    def preprocess(self, input_list: list[Prompt]) -> dict[str, Any]:
        return {}

    def predict_stream(
        self, input_list: list[Prompt], preprocessed_data: dict[str, Any]
    ) -> Generator[Sequence[Token | ItemError | None], frozenset[int], None]:
        self.batches.append(len(input_list))
        cancelled: frozenset[int] = frozenset()
        for step in range(max(p.n for p in input_list)):
            self.steps += 1
            if step == 0 and any(p.text == "block" for p in input_list):
                self.gate.wait(30)
            if step == 1 and any(p.text == "fail" for p in input_list):
                raise RuntimeError("the model broke mid-stream")
            if self.step_seconds:
                threading.Event().wait(self.step_seconds)
            entries: list[Token | ItemError | None] = []
            for i, p in enumerate(input_list):
                if i in cancelled or step >= p.n:
                    entries.append(None)
                elif p.text == "refuse":
                    entries.append(self.item_error("this prompt is refused"))
                else:
                    entries.append(Token(token=f"{p.text}-{step}"))
            cancelled = yield entries
            self.cancelled.append(cancelled)

    def join_chunks(self, item: Prompt, chunks: list[Token]) -> Completion:
        return Completion(text=" ".join(c.token for c in chunks))
