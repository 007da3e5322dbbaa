"""modalkit-serve: the HTTP service, dynamic batching, the batch worker and the local runtime."""

from importlib.metadata import version as _version

from modalkit_serve import errors
from modalkit_serve._worker import Sender, Worker, is_fatal_error, safe_error_message

__version__ = _version("modalkit-serve")

__all__ = [
    "Sender",
    "Worker",
    "__version__",
    "errors",
    "is_fatal_error",
    "safe_error_message",
]
