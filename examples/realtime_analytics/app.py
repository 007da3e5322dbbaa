"""Real-time analytics: a stream of sensor readings scored in batches, the verdicts delivered to a taskiq worker.

    redis-server --port 6379 --save '' &                                  # the queue (Redis streams)
    uv run modalkit serve examples/realtime_analytics/app.py              # the scoring service
    cd examples/realtime_analytics && uv run taskiq worker worker:broker --workers 1    # the consumer
    uv run python examples/realtime_analytics/stream.py --events 5000 --rate 1000     # the stream, and a report

Each reading is one ``POST /predict_async`` (``{"message": {"sensor": ..., "value": ...}, "success_queue":
"readings-scored", "failure_queue": "readings-scored", "meta": {...}}``), answered ``202`` at once. Readings
that arrive together are scored in one batch; each verdict is kicked to the ``readings-scored`` Redis stream,
where ``worker.py`` (a real ``taskiq worker``) keeps the per-sensor counts, the anomalies and the lag.
"""

# No `from __future__ import annotations` here: Modal reads the modal.parameter types from the annotations.
import modal
from anomaly_model import AnomalyPipeline, Reading, Score

from modalkit import ModalConfig, ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)


@app.cls(**config.get_app_cls_settings())
class AnalyticsService(ModalService):
    """Scores readings in batches and delivers each verdict through the configured queue backend."""

    inference_implementation = AnomalyPipeline
    modal_utils = config
    model_name: str = modal.parameter(default="detector")


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]  # FastAPI; typed where it is built
    """The HTTP API: /predict_async (and /predict_sync, /predict_batch, /jobs/{id}, /health, /ready, /metrics)."""
    return create_web_endpoints(app_cls=AnalyticsService, input_model=Reading, output_model=Score)
