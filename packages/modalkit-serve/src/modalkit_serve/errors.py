"""Errors raised by the serving layer.

Each one maps to one HTTP answer, so a runner (local or Modal) raises them and the app turns them into
JSON responses; no stack trace ever reaches a client.

The tree::

    ServeError(Exception)                 root of everything modalkit-serve raises
    ├── UnknownModelError                 404: the model_name is not one of the configured entries
    ├── NotReadyError                     503: the models are still loading, the service is draining, or a fatal
    │                                          (CUDA) error stopped the worker (Retry-After: 1)
    │   └── ModelLoadError                503 without Retry-After: the model failed to load; from `run`, the
    │                                          server stopped because of it (the CLI exits 3)
    ├── QueueFullError                    503 + Retry-After: the batch queue or the async outbox is full
    ├── RequestTimeoutError               504: the request took longer than server_config.request_timeout_seconds
    ├── JobNotFoundError                  404: no such job id (never existed, or expired from the job store)
    └── ServiceSpecError                  the app file given to the CLI does not define a service
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "JobNotFoundError",
    "ModelLoadError",
    "NotReadyError",
    "QueueFullError",
    "RequestTimeoutError",
    "ServeError",
    "ServiceSpecError",
    "UnknownModelError",
]


class ServeError(Exception):
    """Root of every modalkit-serve error.

    Attributes:
        status_code: The HTTP status the app answers with.
    """

    status_code: int = 500


class UnknownModelError(ServeError):
    """The requested model is not configured.

    Attributes:
        model_name: What was asked for.
        known: The configured model names.
    """

    status_code = 404

    def __init__(self, model_name: str | None, known: Sequence[str]) -> None:
        self.model_name = model_name
        self.known = list(known)
        names = ", ".join(self.known)
        if model_name is None:
            self.status_code = 422  # a bad request: the caller must say which model
            msg = f"model_name is required when several models are served; pass ?model_name= one of: {names}"
        else:
            msg = f"unknown model {model_name!r}; known models: {names}"
        super().__init__(msg)


class NotReadyError(ServeError):
    """The service cannot take work now (loading, draining, or stopped after a fatal error).

    Attributes:
        retry_after: Seconds the client should wait (the ``Retry-After`` header), or None when retrying cannot help.
    """

    status_code = 503
    retry_after: int | None = 1


class ModelLoadError(NotReadyError):
    """A model failed to load: a retry cannot help, so no ``Retry-After``; its message names no server path.

    `run` raises it after stopping the server (unless ``keep_running``); the CLIs exit with status 3 then.
    """

    retry_after = None
    exit_status = 3


class QueueFullError(ServeError):
    """The queue in front of the model (or the async outbox) is full; the client should retry later.

    Attributes:
        retry_after: Seconds the client should wait, sent as the ``Retry-After`` header.
    """

    status_code = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class RequestTimeoutError(ServeError):
    """The request did not finish within ``server_config.request_timeout_seconds``."""

    status_code = 504


class JobNotFoundError(ServeError):
    """No job with this id is known (it never existed, or expired after ``server_config.job_ttl_seconds``)."""

    status_code = 404


class ServiceSpecError(ServeError):
    """The app file does not define a service the CLI can run; the message says what to add."""
