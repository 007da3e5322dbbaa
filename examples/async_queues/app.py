"""The ticket router, answering asynchronously: each result is delivered to a queue.

    uv run modalkit serve examples/async_queues/app.py                  # taskiq on Redis (modalkit.yaml)
    uv run modalkit serve examples/async_queues/app.py \\
        --config examples/async_queues/modalkit.yaml,examples/async_queues/sqs.yaml   # Amazon SQS

A request to ``/predict_async`` names the queues: ``{"message": {...}, "success_queue": "ticket-routes",
"failure_queue": "ticket-failures", "meta": {...}}``. The service answers ``202 {"job_id": ...}`` at once; the
routing decision arrives on ``ticket-routes`` (or the error on ``ticket-failures``) with that ``job_id`` and the
request's ``meta``. consumer.py reads them.
"""

# No `from __future__ import annotations` here: Modal reads the modal.parameter types from the annotations.
import modal
from ticket_router import Route, Ticket, TicketRouter

from modalkit import ModalConfig, ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)


@config.cls(app)  # @app.cls(**config.get_app_cls_settings()), plus @modal.concurrent when configured
class TicketService(ModalService):
    """Routes tickets in batches and delivers each result through the configured queue backend."""

    inference_implementation = TicketRouter
    modal_utils = config
    model_name: str = modal.parameter(default="router")


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]  # FastAPI; typed where it is built
    """The HTTP API: /predict_async (and /predict_sync, /predict_batch, /jobs/{id}, /health, /ready, /metrics)."""
    return create_web_endpoints(app_cls=TicketService, input_model=Ticket, output_model=Route)
