"""The sentiment service: one file, two runtimes.

    uv run modalkit serve examples/sentiment/app.py    # this machine, http://127.0.0.1:8000 (no Modal account)
    uv run modalkit deploy examples/sentiment/app.py   # Modal (after `modal token new`)

The settings come from the modalkit.yaml beside this file (or the files named by MODALKIT_CONFIG). On Modal,
`SentimentService` runs the pipeline in batches (``@modal.batched`` from ``batch_config``) and `web_endpoints`
serves the HTTP API, forwarding each request to it. `modalkit serve` runs the same pipeline, batching and routes
in one local process.
"""

# No `from __future__ import annotations` here: Modal reads the modal.parameter types from the annotations.
import modal
from sentiment_model import SentimentOutput, SentimentPipeline, TextInput

from modalkit import ModalConfig, ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)


@config.cls(app)  # @app.cls(**config.get_app_cls_settings()), plus @modal.concurrent when configured
class SentimentService(ModalService):
    """VADER in batches; one container serves every model entry (pick one with ``model_name``)."""

    inference_implementation = SentimentPipeline
    modal_utils = config
    model_name: str = modal.parameter(default="vader")


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]  # FastAPI; typed where it is built
    """The HTTP API: /predict_sync, /predict_batch, /predict_async, /jobs/{id}, /health, /ready, /metrics."""
    return create_web_endpoints(app_cls=SentimentService, input_model=TextInput, output_model=SentimentOutput)
