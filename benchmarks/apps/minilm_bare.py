"""Bare FastAPI + uvicorn calling the MiniLM once per request (the unbatched baseline of scenario (d)).

    examples/embeddings/.venv/bin/python apps/minilm_bare.py --port N

A plain ``def`` endpoint, as a user would write it: FastAPI runs it in its thread pool, one model call per
request. uvicorn at log level warning (no access log), one worker.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from minilm_model import embed_batch, load
from pydantic import BaseModel

model = load()
app = FastAPI()


class Text(BaseModel):
    text: str


@app.post("/predict_sync")
def predict(item: Text) -> dict[str, list[float]]:
    return {"embedding": embed_batch(model, [item.text])[0]}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
