"""The LLM token-streaming service: one file, two runtimes.

    cd examples/llm && uv sync --locked               # its own environment: onnxruntime, onnx, tokenizers
    uv run modalkit serve app.py               # this machine, http://127.0.0.1:8000
    uv run modalkit deploy app.py              # Modal (after `modal token new`)

On Modal, `LLMService` runs the token-streaming pipeline in batches (``@modal.batched`` from ``batch_config``) and
`web_endpoints` serves the HTTP API. `modalkit serve` runs the same pipeline, batching and routes locally.
"""

# No `from __future__ import annotations` here: Modal reads the modal.parameter types from the annotations.
import modal
from llm_model import Completion, LLMPipeline, Prompt

from modalkit import ModalConfig, ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)


@config.cls(app)  # @app.cls(**config.get_app_cls_settings()), plus @modal.concurrent when configured
class LLMService(ModalService):
    """Token streams in batches; one container serves every model entry (pick one with ``model_name``)."""

    inference_implementation = LLMPipeline
    modal_utils = config
    model_name: str = modal.parameter(default="bigram")


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]  # FastAPI; typed where it is built
    """The HTTP API: /predict_stream (SSE), /predict_sync, /predict_batch, /predict_async, /jobs/{id}, /metrics..."""
    return create_web_endpoints(app_cls=LLMService, input_model=Prompt, output_model=Completion)
