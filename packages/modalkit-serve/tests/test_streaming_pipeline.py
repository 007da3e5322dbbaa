"""A streaming pipeline behind the existing routes: /predict_sync, /predict_batch and async jobs get the joined
output of its chunks (the model still runs one step per call over the whole batch)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Generator, Sequence
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, ItemError, StreamingPipeline
from modalkit_queue import MemoryBackend
from modalkit_serve import LocalRunner, create_app
from serve_support import settings_with

GUARD = 10.0


class Prompt(BaseModel):
    text: str


class Token(BaseModel):
    token: str


class Completion(InferenceOutputModel):
    text: str
    tokens: int


class WordStream(StreamingPipeline[Prompt, Token, Completion]):
    """One word per step for every prompt of the batch; ``bad`` ends that prompt's stream with an error."""

    def preprocess(self, input_list: list[Prompt]) -> dict[str, Any]:
        return {"words": [p.text.split() for p in input_list]}

    def predict_stream(
        self, input_list: list[Prompt], preprocessed_data: dict[str, Any]
    ) -> Generator[Sequence[Token | ItemError | None], frozenset[int], None]:
        words: list[list[str]] = preprocessed_data["words"]
        for step in range(max(map(len, words), default=0)):
            yield [
                (self.item_error("bad word") if w[step] == "bad" else Token(token=w[step])) if step < len(w) else None
                for w in words
            ]

    def join_chunks(self, item: Prompt, chunks: list[Token]) -> Completion:
        return Completion(text=" ".join(c.token for c in chunks), tokens=len(chunks))


@pytest.fixture(params=[True, False], ids=["asgi-fast-path", "fastapi-routes"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_sync_batch_and_async_routes_answer_the_joined_chunks(fast_path: bool) -> None:
    settings = settings_with(models={"words": {}})
    backend = MemoryBackend()
    runner = LocalRunner(WordStream, settings, queue_backend=backend)
    app = create_app(runner, Prompt, Completion, settings, fast_path=fast_path)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runner.wait_ready(), GUARD)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            sync = await client.post("/predict_sync", json={"text": "one two three"})
            assert sync.status_code == 200
            assert sync.json() == {"status": "success", "error": None, "text": "one two three", "tokens": 3}

            refused = await client.post("/predict_sync", json={"text": "one bad"})
            assert refused.status_code == 422
            assert refused.json()["detail"][0]["msg"] == "bad word"

            batch = await client.post("/predict_batch", json=[{"text": "a b"}, {"text": "bad"}, {"text": "c"}])
            assert batch.status_code == 200
            results = batch.json()
            assert [r["status"] for r in results] == ["success", "error", "success"]
            assert results[0]["text"] == "a b"
            assert results[2]["text"] == "c"

            accepted = await client.post(
                "/predict_async", json={"message": {"text": "later on"}, "success_queue": "done"}
            )
            assert accepted.status_code == 202
            job_id = accepted.json()["job_id"]

            async def finished() -> dict[str, Any]:
                while True:
                    status: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
                    if status["status"] in ("success", "error"):
                        return status
                    await asyncio.sleep(0.01)

            status = await asyncio.wait_for(finished(), GUARD)
            assert status["result"] == {"status": "success", "error": None, "text": "later on", "tokens": 2}

            async def delivered() -> list[str]:
                while True:
                    messages = backend.messages("done")
                    if messages:
                        return messages
                    await asyncio.sleep(0.01)

            [message] = [json.loads(m) for m in await asyncio.wait_for(delivered(), GUARD)]
            assert message["job_id"] == job_id
            assert message["text"] == "later on"
