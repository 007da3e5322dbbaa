"""modalkit-serve: the HTTP service, dynamic batching, the batch worker and the local runtime.

- `create_app(runner, input_model, output_model, settings, authenticator=None)`: the FastAPI service.
- `LocalRunner`: serves every model entry on this machine (a `Batcher` and a `Worker` per model).
- `Worker`: the one place a batch runs (and a batch of streams steps), locally and inside a Modal container.
- `StreamingRunner`, `ChunkStream`: what ``/predict_stream`` needs of a runtime (`create_app(chunk_model=...)`).
- `ServiceSpec` and `run`: what an app file declares and how `modalkit-serve APP.py` runs it;
  `load_service`, `load_app_file` and `use_config_beside`: the one way an app file is loaded (modalkit too).
- `configure_logging`: JSON-lines logs (called by the CLI; nothing is configured at import).

The request path, in the order the code runs (docs/serving.md has the same ten lines):

1. request: uvicorn hands each HTTP request to the app `modalkit_serve._service.run` started.
2. ASGI edge: `modalkit_serve._asgi.ServeMiddleware` sets the request id, refuses a body too large (413) or
   not JSON (415), answers the predict routes itself and hands the rest to FastAPI (`modalkit_serve._app.create_app`).
3. auth: `modalkit_auth.Authenticator` checks the API key before a predict route runs.
4. routes: `modalkit_serve._routes.Routes.predict_sync` (and `predict_batch`, `predict_async`) validates the body
   against the input model and calls the runner.
5. runner: `modalkit_serve._runner.LocalRunner.predict` picks the model entry (on Modal: `modalkit._web.ModalRunner`).
6. batcher: `modalkit_serve._batcher.Batcher.submit` groups items into batches, with a policy from
   `modalkit_serve._scheduling`, and runs each batch off the event loop.
7. worker: `modalkit_serve._worker.Worker.run_batch` runs a batch with per-item error isolation.
8. pipeline: `modalkit_pipeline.InferencePipeline.run_inference`: preprocess, predict, postprocess.
9. sender: an async item's result goes to `modalkit_queue.ReliableSender` (retries, backoff, dead letter).
10. reply: the route turns the result, or a `modalkit_serve.errors.ServeError`, into JSON; `GET /jobs/{id}` reads
   `modalkit_serve._jobs.JobStore`.
"""

from importlib.metadata import version as _version

from modalkit_serve import errors
from modalkit_serve._app import AuthenticatorLike, ErrorResponse, create_app
from modalkit_serve._appfile import load_app_file, load_service, use_config_beside
from modalkit_serve._asgi import RequestInfo
from modalkit_serve._batcher import Batcher, BatchItem
from modalkit_serve._entries import check_model_entries
from modalkit_serve._jobs import JobStatus, JobView, same_owner
from modalkit_serve._logging import configure_logging
from modalkit_serve._metrics import ServeMetrics
from modalkit_serve._runner import (
    LocalRunner,
    ManagedRunner,
    OutboxSender,
    Runner,
    StreamingRunner,
    configured_batcher,
)
from modalkit_serve._service import run
from modalkit_serve._spec import ServiceSpec, build_app
from modalkit_serve._streams import ChunkStream, StreamDone, StreamError
from modalkit_serve._worker import Sender, Worker, is_fatal_error, safe_error_message

__version__ = _version("modalkit-serve")

__all__ = [
    "AuthenticatorLike",
    "BatchItem",
    "Batcher",
    "ChunkStream",
    "ErrorResponse",
    "JobStatus",
    "JobView",
    "LocalRunner",
    "ManagedRunner",
    "OutboxSender",
    "RequestInfo",
    "Runner",
    "Sender",
    "ServeMetrics",
    "ServiceSpec",
    "StreamDone",
    "StreamError",
    "StreamingRunner",
    "Worker",
    "__version__",
    "build_app",
    "check_model_entries",
    "configure_logging",
    "configured_batcher",
    "create_app",
    "errors",
    "is_fatal_error",
    "load_app_file",
    "load_service",
    "run",
    "safe_error_message",
    "same_owner",
    "use_config_beside",
]
