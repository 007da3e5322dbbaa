"""modalkit serving the MiniLM of scenario (d). Runs in the embeddings example's venv (it has onnxruntime).

Settings are in modalkit.yaml next to this file (max_batch_size 32, wait_ms 5). Serve it with:

    examples/embeddings/.venv/bin/python -m modalkit serve benchmarks/apps/minilm/app.py --port 8000
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# The shared benchmark models live one folder up (benchmarks/apps); the CLI only adds this folder to sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minilm_model import embed_batch, load
from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_serve import ServiceSpec


class TextInput(BaseModel):
    text: str


class EmbeddingOutput(InferenceOutputModel):
    embedding: list[float]


class MiniLMPipeline(InferencePipeline[TextInput, EmbeddingOutput]):
    """One model call per batch, through the same ``embed_batch`` as the other servers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model = load()

    def preprocess(self, input_list: list[TextInput]) -> dict[str, Any]:
        return {"texts": [item.text for item in input_list]}

    def predict(self, input_list: list[TextInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {"vectors": embed_batch(self.model, preprocessed_data["texts"])}

    def postprocess(self, input_list: list[TextInput], raw_output: dict[str, Any]) -> list[EmbeddingOutput | ItemError]:
        return [EmbeddingOutput(embedding=v) for v in raw_output["vectors"]]


# Settings: the modalkit.yaml next to this file (the CLI points MODALKIT_CONFIG at it).
service = ServiceSpec(MiniLMPipeline)
