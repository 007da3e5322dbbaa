"""Errors raised by the modalkit meta-package (the Modal glue and the ``modalkit`` command).

Exception tree::

    ModalkitError (RuntimeError)          root: anything the Modal glue or the CLI refuses
    ├── ServiceDefinitionError (TypeError) a ModalService subclass is missing something it needs
    ├── AppFileError                       an app file cannot be imported or defines no modalkit service
    │                                      (also a modalkit_serve.errors.ServiceSpecError)
    ├── ModalNotLoggedInError              `modalkit deploy` was asked to deploy without Modal credentials
    └── ScaffoldError                      `modalkit init` cannot create the project (e.g. the folder exists)

Configuration problems are ``modalkit_config.ConfigError`` (a ``ValueError``); the CLI prints both kinds
as one readable message without a stack trace.
"""

from __future__ import annotations

from modalkit_serve.errors import ServiceSpecError

__all__ = [
    "AppFileError",
    "ModalNotLoggedInError",
    "ModalkitError",
    "ScaffoldError",
    "ServiceDefinitionError",
]


class ModalkitError(RuntimeError):
    """Root of every error raised by the modalkit meta-package."""


class ServiceDefinitionError(ModalkitError, TypeError):
    """A `ModalService` subclass is incomplete: no ``inference_implementation``, ``modal_utils`` or
    ``model_name`` parameter, or a model name the configuration does not list."""


class AppFileError(ModalkitError, ServiceSpecError):
    """An app file given to the CLI cannot be imported, or defines no modalkit service to serve.

    Also a ``modalkit_serve.errors.ServiceSpecError``: modalkit-serve loads the file, modalkit finds the service.
    """


class ModalNotLoggedInError(ModalkitError):
    """No Modal token is configured on this machine, so nothing can be deployed."""


class ScaffoldError(ModalkitError):
    """`modalkit init` cannot create the project where it was asked to."""
