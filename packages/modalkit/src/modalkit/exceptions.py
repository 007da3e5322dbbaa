"""``from modalkit.exceptions import ...``: the earlier modalkit's error classes, kept for code that catches them.

The modalkit packages raise their own errors (``modalkit_config.ConfigError``, ``modalkit_queue.QueueError``,
``modalkit.errors.ModalkitError``, ...). These four are raised by the earlier API kept in `modalkit.task_queue`
(the ``send_message`` backends, `~modalkit.task_queue.create_backend` by name, the two example backends):

- `TypeValidationError` (``TypeError``): a queue message that is not a string;
- `DependencyError` (``ImportError``): an optional library is missing (the message says what to install);
- `BackendError` (``ValueError``): ``create_backend`` was given a backend name nobody registered;
- `AuthConfigError` (``ValueError``): kept for ``except`` clauses; auth problems are ``modalkit_config.ConfigError``
  now (``auth_config`` is checked with the rest of the file).
"""

from __future__ import annotations

__all__ = ["AuthConfigError", "BackendError", "DependencyError", "TypeValidationError"]


class AuthConfigError(ValueError):
    """The authentication configuration is unusable (today reported as ``modalkit_config.ConfigError``)."""


class DependencyError(ImportError):
    """An optional library the requested feature needs is not installed."""


class TypeValidationError(TypeError):
    """A value has the wrong type, e.g. a queue message that is not JSON text."""


class BackendError(ValueError):
    """No queue backend is registered under the requested name."""
