"""modalkit-serve: the HTTP service, dynamic batching, the batch worker and the local runtime.

- `create_app(runner, input_model, output_model, settings, authenticator=None)`: the FastAPI service.
- `LocalRunner`: serves every model entry on this machine (a `Batcher` and a `Worker` per model).
- `Worker`: the one place a batch runs (and a batch of streams steps), locally and inside a Modal container.
- `StreamingRunner`, `ChunkStream`: what ``/predict_stream`` needs of a runtime (`create_app(chunk_model=...)`).
- `ServiceSpec` and `run`: what an app file declares and how `modalkit-serve APP.py` runs it;
  `load_service`, `load_app_file` and `use_config_beside`: the one way an app file is loaded (modalkit too).
- `configure_logging`: JSON-lines logs (called by the CLI; nothing is configured at import).
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
from modalkit_serve._runner import LocalRunner, ManagedRunner, OutboxSender, Runner, StreamingRunner
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
