"""A simulated GPU model behind modalkit's dynamic batching, for tuning max_batch_size and wait_ms.

    uv run modalkit serve examples/gpu_batching/app.py        # this machine
    uv run python examples/gpu_batching/sweep.py              # serve it with several settings and measure

``batch_config`` in modalkit.yaml becomes ``@modal.batched(max_batch_size=..., wait_ms=...)`` on Modal and the
local batcher's settings here; the model entry sets the simulated cost (``fixed_ms + per_item_ms * n``).
"""

# No `from __future__ import annotations` here: Modal reads the modal.parameter types from the annotations.
import modal
from batch_cost_model import Features, Score, SimulatedGpuPipeline

from modalkit import ModalConfig, ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)


@config.cls(app)  # @app.cls(**config.get_app_cls_settings()), plus @modal.concurrent when configured
class SimulatedGpuService(ModalService):
    """One simulated device per container; batches come from batch_config."""

    inference_implementation = SimulatedGpuPipeline
    modal_utils = config
    model_name: str = modal.parameter(default="accel")


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]  # FastAPI; typed where it is built
    """The HTTP API: /predict_sync, /predict_batch, /predict_async, /jobs/{id}, /health, /ready, /metrics."""
    return create_web_endpoints(app_cls=SimulatedGpuService, input_model=Features, output_model=Score)
