"""ModalService: the base of the Modal inference class (``@app.cls(...) class MyApp(ModalService)``).

Modal 1.x shapes this class: it may not define ``__init__`` (configuration arrives through class attributes,
``modal.parameter`` fields and ``@modal.enter``), and its only callable method is the batched one. The batch
size and wait of that method come from the subclass's own ``modal_utils``: ``__init_subclass__`` builds
``process_request`` for each subclass, so nothing is read from a configuration file when modalkit is imported.

Inside the container a request goes: ``process_request`` -> serve's `Worker` (per-item error isolation, async
delivery through the queue package's `ReliableSender`) -> the user's pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import modal
import modal.experimental
from pydantic import BaseModel

from modalkit._config import ModalConfig
from modalkit._jobs import AsyncJobInput
from modalkit.errors import ServiceDefinitionError
from modalkit_auth import new_job_id
from modalkit_pipeline import AsyncInputModel, InferencePipeline, SyncInputModel

if TYPE_CHECKING:
    from modalkit_queue import QueueBackend, ReliableSender
    from modalkit_serve import Worker

__all__ = ["BATCHED_METHOD", "LegacyQueueBackend", "ModalService", "check_service_class"]

logger = logging.getLogger("modalkit")

#: The name of the batched method, as the earlier modalkit named it.
BATCHED_METHOD = "process_request"

_ASYNC_KEYS = frozenset({"success_queue", "failure_queue", "meta", "job_id"})


class ModalService:
    """Base class for the Modal class that runs a pipeline.

    Subclass it under ``@app.cls(**config.get_app_cls_settings())`` and set:

    - ``inference_implementation``: the `InferencePipeline` subclass to serve;
    - ``modal_utils``: the `ModalConfig` (its batch settings become ``@modal.batched``);
    - ``model_name: str = modal.parameter(default="...")``: declared on the subclass itself (Modal ignores
      parameters declared only on a base class);
    - optionally ``queue_backend``: a `modalkit_queue.QueueBackend` to deliver async results to, instead of
      the one ``queue_config`` names.

    Do not define ``__init__``: Modal 1.x refuses classes that have one.
    """

    # Modal evaluates these annotations (typing.get_type_hints) to find parameters: every name must be
    # importable at runtime, hence the runtime imports above.

    inference_implementation: ClassVar[type[InferencePipeline[Any, Any]]]
    modal_utils: ClassVar[ModalConfig]
    queue_backend: ClassVar[Any] = None
    model_name: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            raise ServiceDefinitionError(
                f"{cls.__name__} defines __init__, which Modal 1.x refuses on @app.cls classes: move set-up into "
                "a method decorated with @modal.enter(), and configuration into class attributes or modal.parameter"
            )
        config = getattr(cls, "modal_utils", None)
        impl = getattr(cls, "inference_implementation", None)
        if isinstance(config, ModalConfig) and isinstance(impl, type) and issubclass(impl, InferencePipeline):
            from modalkit_serve import check_model_entries

            # At import of the app file: `modal deploy` stops at a mistyped entry before anything is uploaded.
            check_model_entries(impl, config.settings)
        if config is None or BATCHED_METHOD in cls.__dict__:
            return  # an intermediate base, or the subclass wrote its own batched method
        setattr(cls, BATCHED_METHOD, modal.batched(**config.get_batched_method_settings())(_batched_method(cls)))

    @modal.enter()
    def load_artefacts(self) -> None:
        """Build the pipeline for ``self.model_name`` and the worker that runs it (once per container)."""
        cls = type(self)
        check_service_class(cls)
        config = cls.modal_utils
        entries = config.model_settings.model_entries
        name = self.model_name
        if name not in entries:
            known = ", ".join(sorted(entries))
            raise ServiceDefinitionError(f"model {name!r} is not in model_settings.model_entries (known: {known})")
        from modalkit_queue import ReliableSender
        from modalkit_serve import Worker

        pipeline = cls.inference_implementation(
            name,
            config.model_settings.local_model_repository_folder,
            dict(config.model_settings.common),
            **dict(entries[name]),
        )
        queue_config = config.app_settings.queue_config
        sender = ReliableSender.from_config(queue_config, backend=self._queue_backend()).start()
        self._modalkit_sender: ReliableSender = sender
        self._modalkit_worker: Worker = Worker(pipeline, sender=sender, on_fatal=_stop_fetching_inputs)
        self._modalkit_last_reload = time.monotonic()
        self._modalkit_reload_lock = threading.Lock()

    @modal.exit()
    def drain(self) -> None:
        """Deliver the async results still waiting before the container stops."""
        sender = getattr(self, "_modalkit_sender", None)
        if sender is not None:
            timeout = type(self).modal_utils.app_settings.server_config.drain_timeout_seconds
            if not sender.close(timeout=timeout):
                logger.error("some async results were not delivered within %ss; see the dead-letter file", timeout)

    # -- helpers (plain methods: Modal only sees the lifecycle hooks and the batched method) ------------------

    def _queue_backend(self) -> QueueBackend | None:
        backend = type(self).queue_backend
        if backend is None:
            return None  # ReliableSender.from_config builds the one queue_config names
        if isinstance(backend, type):
            backend = backend()
        if not hasattr(backend, "send") and hasattr(backend, "send_message"):
            return LegacyQueueBackend(backend)
        queue_backend: QueueBackend = backend
        return queue_backend

    def _run_requests(self, requests: Sequence[Any]) -> list[BaseModel]:
        worker = self._modalkit_worker
        self._reload_volumes_if_due(worker)
        items = [self._coerce(r) for r in requests]
        # The job id travels inside the request (AsyncJobInput, sent by create_web_endpoints): Modal tells a
        # batched method only the first input's call id, so that cannot identify the others. The id is in the
        # input itself, so a retried input is delivered under the same id again.
        async_jobs = {
            i: (item, item.job_id if isinstance(item, AsyncJobInput) else new_job_id())
            for i, item in enumerate(items)
            if isinstance(item, AsyncInputModel)
        }
        # Each input is a call of its own: a failed one reports index 0, not its place in Modal's batch.
        return worker.run_messages([item.message for item in items], async_jobs, [0] * len(items))

    def _reload_volumes_if_due(self, worker: Worker) -> None:
        config = type(self).modal_utils
        interval = config.app_settings.deployment_config.volume_reload_interval_seconds
        if interval is None or not config.app_settings.deployment_config.volumes:
            return
        with self._modalkit_reload_lock:
            now = time.monotonic()
            if now - self._modalkit_last_reload < interval:
                return
            self._modalkit_last_reload = now
        worker.reload_volumes(config.reload_volumes)

    def _coerce(self, request: Any) -> SyncInputModel[Any] | AsyncInputModel[Any]:
        if isinstance(request, SyncInputModel | AsyncInputModel):
            return request
        input_model, _ = type(self).inference_implementation.io_models()
        if isinstance(request, Mapping):
            keys = set(request)
            wrapper = AsyncJobInput if "job_id" in keys else AsyncInputModel if _ASYNC_KEYS & keys else SyncInputModel
            return cast("SyncInputModel[Any] | AsyncInputModel[Any]", wrapper[input_model].model_validate(request))
        if isinstance(request, BaseModel):
            return SyncInputModel[input_model](message=request)  # type: ignore[valid-type]
        raise TypeError(
            f"{BATCHED_METHOD} takes SyncInputModel or AsyncInputModel requests (got {type(request).__name__})"
        )


def _batched_method(cls: type[ModalService]) -> Any:
    """A fresh function per subclass, named like a method of it, for ``modal.batched`` to wrap."""

    def process_request(self: ModalService, requests: list[Any]) -> list[BaseModel]:
        return self._run_requests(requests)

    process_request.__qualname__ = f"{cls.__qualname__}.{BATCHED_METHOD}"
    process_request.__module__ = cls.__module__
    process_request.__doc__ = (
        "Run one batch of SyncInputModel/AsyncInputModel requests; one result per request, in order "
        "(the pipeline's output, or an ItemError for a request that failed). An async result is delivered under "
        "the request's job_id when it is an AsyncJobInput, else under a new id."
    )
    return process_request


def check_service_class(cls: type[Any]) -> None:
    """Refuse a ModalService subclass that lacks what it needs, with the line to add.

    Raises:
        ServiceDefinitionError: ``inference_implementation``, ``modal_utils`` or a ``model_name`` parameter is missing.
    """
    name = cls.__name__
    impl = getattr(cls, "inference_implementation", None)
    if not (isinstance(impl, type) and issubclass(impl, InferencePipeline)):
        raise ServiceDefinitionError(
            f"{name}.inference_implementation must be your InferencePipeline subclass "
            f"(add `inference_implementation = MyPipeline` to {name})"
        )
    if not isinstance(getattr(cls, "modal_utils", None), ModalConfig):
        raise ServiceDefinitionError(f"{name}.modal_utils must be a ModalConfig (add `modal_utils = config` to {name})")
    if "model_name" not in getattr(cls, "__annotations__", {}) and "model_name" not in cls.__dict__:
        raise ServiceDefinitionError(
            f'{name} must declare `model_name: str = modal.parameter(default="...")` itself '
            "(Modal ignores parameters declared only on a base class)"
        )


def _stop_fetching_inputs(exc: BaseException) -> None:
    """The Worker's ``on_fatal``: this container's GPU is unusable, so Modal should send it no more inputs."""
    try:
        modal.experimental.stop_fetching_inputs()
    except Exception:
        # Outside a Modal container (``.local()``, tests) there is no input stream to stop.
        logger.warning("fatal error outside a Modal container; nothing to stop", exc_info=True)


class LegacyQueueBackend:
    """Adapts the earlier modalkit's queue backends (``async send_message(queue, message) -> bool``).

    A ``False`` return becomes an exception, so the sender retries and dead-letters as for any failure.
    """

    def __init__(self, legacy: Any) -> None:
        self.legacy = legacy

    async def send(self, queue_name: str, message: str) -> None:
        """Deliver through the legacy backend; raise when it reports failure."""
        ok = await self.legacy.send_message(queue_name, message)
        if ok is False:
            raise ConnectionError(f"{type(self.legacy).__name__}.send_message returned False for {queue_name!r}")

    async def close(self) -> None:
        """Close the legacy backend if it has a ``close``."""
        close = getattr(self.legacy, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result
