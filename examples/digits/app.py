"""The digits service: two versions of a scikit-learn classifier behind one API.

    cd examples/digits
    uv run modalkit serve app.py                                    # http://127.0.0.1:8000 (no Modal account)
    uv run modalkit deploy app.py --config modalkit.yaml,modal.yaml # Modal, artifacts on a volume

Each model entry of modalkit.yaml (``digits_v1``, ``digits_v2``) is one artifact file in the model folder;
``?model_name=`` picks one. On Modal, a container serves the entry named by ``model_name`` and reloads the
volume between batches (``volume_reload_interval_seconds``); the pipeline's ``on_volume_reload`` then loads a
replaced artifact, so a new version goes live without a restart.
"""

# No `from __future__ import annotations` here: Modal reads the modal.parameter types from the annotations.
import modal
from digits_model import DigitImage, DigitPrediction, DigitsPipeline

from modalkit import ModalConfig, ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)


@config.cls(app)  # @app.cls(**config.get_app_cls_settings()), plus @modal.concurrent when configured
class DigitsService(ModalService):
    """One model version per container, batched."""

    inference_implementation = DigitsPipeline
    modal_utils = config
    model_name: str = modal.parameter(default="digits_v2")


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]  # FastAPI; typed where it is built
    """The HTTP API: /predict_sync, /predict_batch, /predict_async, /jobs/{id}, /health, /ready, /metrics."""
    return create_web_endpoints(app_cls=DigitsService, input_model=DigitImage, output_model=DigitPrediction)
