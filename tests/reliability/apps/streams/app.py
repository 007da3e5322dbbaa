"""A streaming pipeline that takes a file: the service behind the reliability tests of /predict_stream and uploads.

It streams one chunk per word of ``text`` (at most ``max_chunks``), then one chunk with the size of ``image``.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, Field

from modalkit_pipeline import Binary, InferenceOutputModel, ItemError, StreamingPipeline, accepts
from modalkit_serve import ServiceSpec


class Upload(BaseModel):
    text: str = Field(min_length=1, max_length=200)
    image: Annotated[Binary, accepts("image/png", "image/jpeg")] = b""
    max_chunks: int = Field(default=8, ge=1, le=64)


class Piece(BaseModel):
    word: str
    position: int


class Whole(InferenceOutputModel):
    words: list[str]


class WordStream(StreamingPipeline[Upload, Piece, Whole]):
    def preprocess(self, input_list: list[Upload]) -> dict[str, Any]:
        return {"words": [[*(u.text.split() or ["(blank)"])[: u.max_chunks], f"{len(u.image)}B"] for u in input_list]}

    def predict_stream(
        self, input_list: list[Upload], preprocessed_data: dict[str, Any]
    ) -> Generator[Sequence[Piece | ItemError | None], frozenset[int], None]:
        words: list[list[str]] = preprocessed_data["words"]
        for step in range(max(map(len, words))):
            yield [Piece(word=w[step], position=step) if step < len(w) else None for w in words]

    def join_chunks(self, item: Upload, chunks: list[Piece]) -> Whole:
        return Whole(words=[c.word for c in chunks])


service = ServiceSpec(WordStream)
