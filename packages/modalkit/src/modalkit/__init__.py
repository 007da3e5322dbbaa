"""modalkit: serve ML models over HTTP on one machine (``modalkit serve app.py``) and on Modal (``modal deploy``).

Everything a user imports comes from here::

    from modalkit import InferencePipeline, InferenceOutputModel, ModalConfig, ModalService, create_web_endpoints

The earlier modalkit's module paths keep working: ``modalkit.inference_pipeline``, ``modalkit.iomodel``,
``modalkit.modal_config``, ``modalkit.modal_service``, ``modalkit.settings``, ``modalkit.task_queue``.
"""

from importlib import import_module as _import_module
from importlib.metadata import version as _version
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from modalkit import errors
from modalkit._config import ModalConfig
from modalkit._jobs import AsyncJobInput, JobIndex, MemoryJobIndex, ModalDictJobIndex, job_index_name
from modalkit._serve import load_app_file, local_app
from modalkit.errors import (
    AppFileError,
    ModalkitError,
    ModalNotLoggedInError,
    ScaffoldError,
    ServiceDefinitionError,
)
from modalkit_config import ConfigError, Settings, load_settings, settings_from_dict
from modalkit_pipeline import (
    AsyncInputModel,
    AsyncOutputModel,
    DelayedFailureOutputModel,
    InferenceOutputModel,
    InferencePipeline,
    ItemError,
    SyncInputModel,
    failed_indices,
)
from modalkit_pipeline.testing import run_pipeline
from modalkit_queue import (
    MemoryBackend,
    QueueBackend,
    ReliableSender,
    create_backend,
    register_backend,
    send_response_queue,
)

if _TYPE_CHECKING:
    from modalkit._service import ModalService
    from modalkit._streaming import ModalStreamService
    from modalkit._web import ModalCalls, ModalRunner, create_web_endpoints
    from modalkit.task_queue import LegacyQueueBackend

__version__ = _version("modalkit")

# `import modal` takes seconds; these names need it, so they are imported on first use. A local-only user
# (`modalkit serve` of a ServiceSpec file, `validate`, `schema`, tests of a pipeline) never pays for it.
_LAZY = {
    "LegacyQueueBackend": "modalkit.task_queue",
    "ModalService": "modalkit._service",
    "ModalStreamService": "modalkit._streaming",
    "ModalCalls": "modalkit._web",
    "ModalRunner": "modalkit._web",
    "create_web_endpoints": "modalkit._web",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modalkit' has no attribute {name!r}")
    value = getattr(_import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AppFileError",
    "AsyncInputModel",
    "AsyncJobInput",
    "AsyncOutputModel",
    "ConfigError",
    "DelayedFailureOutputModel",
    "InferenceOutputModel",
    "InferencePipeline",
    "ItemError",
    "JobIndex",
    "LegacyQueueBackend",
    "MemoryBackend",
    "MemoryJobIndex",
    "ModalCalls",
    "ModalConfig",
    "ModalDictJobIndex",
    "ModalNotLoggedInError",
    "ModalRunner",
    "ModalService",
    "ModalStreamService",
    "ModalkitError",
    "QueueBackend",
    "ReliableSender",
    "ScaffoldError",
    "ServiceDefinitionError",
    "Settings",
    "SyncInputModel",
    "__version__",
    "create_backend",
    "create_web_endpoints",
    "errors",
    "failed_indices",
    "job_index_name",
    "load_app_file",
    "load_settings",
    "local_app",
    "register_backend",
    "run_pipeline",
    "send_response_queue",
    "settings_from_dict",
]
