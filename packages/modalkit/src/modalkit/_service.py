"""ModalService: the base of the Modal inference class (``@app.cls(...) class MyApp(ModalService)``).

Modal 1.x shapes this class: it may not define ``__init__`` (configuration arrives through class attributes,
``modal.parameter`` fields and ``@modal.enter``), and its only callable method is the batched one. The batch
size and wait of that method come from the subclass's own ``modal_utils``: ``__init_subclass__`` builds
``process_request`` for each subclass, so nothing is read from a configuration file when modalkit is imported.

Inside the container a request goes: ``process_request`` -> serve's `Worker` (per-item error isolation, async
delivery through the queue package's `ReliableSender`) -> the user's pipeline.

Outside ``@app.cls`` the earlier modalkit's constructor still works: ``MyService(queue_backend=...)``, and a
subclass ``__init__`` calling ``super().__init__(queue_backend=...)``. ``ModalService`` itself defines no
``__init__`` (Modal checks ``cls.__init__ is object.__init__``, inherited ones included): the argument is taken
by ``__new__``, and a subclass that writes its own ``__init__`` gets `_EarlierConstructor` appended to its bases,
so its ``super().__init__`` call lands there. Modal refuses such a subclass under ``@app.cls``, as it would any
class with an ``__init__``; there, ``queue_backend = ...`` as a class attribute is the replacement.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

import modal
import modal.experimental
from pydantic import BaseModel

from modalkit._config import ModalConfig
from modalkit._jobs import AsyncJobInput
from modalkit.errors import ServiceDefinitionError
from modalkit.task_queue import LegacyQueueBackend
from modalkit_auth import new_job_id
from modalkit_pipeline import (
    AsyncInputModel,
    AsyncOutputModel,
    DelayedFailureOutputModel,
    InferenceOutputModel,
    InferencePipeline,
    ItemError,
    SyncInputModel,
)

if TYPE_CHECKING:
    from modalkit._web import ModalCalls, ModalRunner
    from modalkit_queue import QueueBackend, ReliableSender
    from modalkit_serve import Worker

__all__ = [
    "BATCHED_METHOD",
    "LegacyQueueBackend",
    "ModalService",
    "check_service_class",
    "queue_backend_of",
    "service_class",
]

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
    - optionally ``queue_backend``: a `modalkit_queue.QueueBackend` (or an earlier-style backend with
      ``send_message``) to deliver async results to, instead of the one ``queue_config`` names.

    Do not define ``__init__`` on an ``@app.cls`` class: Modal 1.x refuses classes that have one. Outside Modal
    (tests, scripts) ``MyService(queue_backend=...)`` and an ``__init__`` calling
    ``super().__init__(queue_backend=...)`` work as in the earlier modalkit.
    """

    # Modal evaluates these annotations (typing.get_type_hints) to find parameters: every name must be
    # importable at runtime, hence the runtime imports above.

    inference_implementation: ClassVar[type[InferencePipeline[Any, Any]]]
    modal_utils: ClassVar[ModalConfig]
    queue_backend: Any = None
    model_name: str
    _modalkit_service_class: ClassVar[type[ModalService]]

    if TYPE_CHECKING:
        # For type checkers only: subclasses' super().__init__(queue_backend=...) lands in _EarlierConstructor
        # at run time, and __new__ checks the arguments of classes without an __init__.
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # The earlier constructor argument, taken here because ModalService may have no __init__ (see the module
        # docstring). A subclass with its own __init__ receives its arguments there instead.
        instance = super().__new__(cls)
        if cls.__init__ is object.__init__:
            unknown = sorted(set(kwargs) - {"queue_backend"})
            if args or unknown:
                got = ", ".join([*(repr(a) for a in args), *unknown])
                raise TypeError(f"{cls.__name__}() takes only the keyword argument queue_backend= (got {got})")
            if kwargs.get("queue_backend") is not None:
                instance.queue_backend = kwargs["queue_backend"]
        return instance

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__ and not issubclass(cls, _EarlierConstructor):
            # After ModalService in the MRO, so the subclass's super().__init__(queue_backend=...) lands there.
            cls.__bases__ = (*cls.__bases__, _EarlierConstructor)
        # Read back through modal.Cls, which forwards unknown attributes to the local class (public behaviour,
        # pinned by test_modal_contract.py): how modalkit finds the user's class without modal's private API.
        cls._modalkit_service_class = cls
        config = getattr(cls, "modal_utils", None)
        if isinstance(config, ModalConfig):
            config._note_service(cls)
        impl = getattr(cls, "inference_implementation", None)
        if isinstance(config, ModalConfig) and isinstance(impl, type) and issubclass(impl, InferencePipeline):
            from modalkit_serve import check_model_entries

            # At import of the app file: `modal deploy` stops at a mistyped entry before anything is uploaded.
            check_model_entries(impl, config.settings)
        cls._modalkit_add_method(config)

    @classmethod
    def _modalkit_add_method(cls, config: Any) -> None:
        """Give the subclass its one Modal method: the batched ``process_request`` (`ModalStreamService`, which
        streams instead, replaces this)."""
        if config is None:
            # No batch settings to build the Modal method from (an intermediate base, or the earlier pattern that
            # sets modal_utils in __init__): the plain method, for direct calls outside Modal.
            if not hasattr(cls, BATCHED_METHOD):
                setattr(cls, BATCHED_METHOD, _batched_method(cls))
            return
        if BATCHED_METHOD in cls.__dict__:
            return  # the subclass wrote its own batched method
        setattr(cls, BATCHED_METHOD, modal.batched(**config.get_batched_method_settings())(_batched_method(cls)))

    @modal.enter()
    def load_artefacts(self) -> None:
        """Build the pipeline for ``self.model_name`` and the worker that runs it (once per container)."""
        cls = type(self)
        check_service_class(cls, self)
        config = self.modal_utils
        entries = config.model_settings.model_entries
        name = self.model_name
        if name not in entries:
            known = ", ".join(sorted(entries))
            raise ServiceDefinitionError(f"model {name!r} is not in model_settings.model_entries (known: {known})")
        from modalkit_queue import ReliableSender
        from modalkit_serve import Worker

        pipeline = self.inference_implementation(
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
        timeout = self.modal_utils.app_settings.server_config.drain_timeout_seconds
        host = getattr(self, "_modalkit_stream_host", None)
        if host is not None:
            host.close(timeout)  # a ModalStreamService's open streams end first (their batches finish)
        sender = getattr(self, "_modalkit_sender", None)
        if sender is not None and not sender.close(timeout=timeout):
            logger.error("some async results were not delivered within %ss; see the dead-letter file", timeout)

    # -- the earlier modalkit's helpers (plain methods and static methods: Modal does not see them) -----------

    def send_async_response(
        self, message_idx: int, raw_output_data: BaseModel, input_data: AsyncInputModel[Any]
    ) -> None:
        """Deliver one async result to the request's success or failure queue (by the result's ``status``).

        As before, the request's ``meta`` is attached to the output (a `DelayedFailureOutputModel` keeps the
        one of its ``original_message``). Delivery goes through the service's sender, so it is retried and
        dead-lettered like every async result; it is skipped when that queue name is empty.

        Args:
            message_idx: The request's place in its batch (only used in the earlier logs; kept for the signature).
            raw_output_data: The pipeline's output for the request.
            input_data: The async request.

        Raises:
            RuntimeError: ``load_artefacts`` has not run (Modal runs it when the container starts).
        """
        del message_idx
        worker = getattr(self, "_modalkit_worker", None)
        if worker is None:
            raise RuntimeError(
                f"{type(self).__name__}.send_async_response needs the service loaded: call load_artefacts() first "
                "(Modal runs it as the @modal.enter hook)"
            )
        if isinstance(raw_output_data, InferenceOutputModel) and not isinstance(
            raw_output_data, DelayedFailureOutputModel
        ):
            raw_output_data.meta = dict(input_data.meta)
        job_id = input_data.job_id if isinstance(input_data, AsyncJobInput) else new_job_id()
        worker.deliver(input_data, raw_output_data, job_id)

    @staticmethod
    def async_call(
        cls: Any, *, calls: ModalCalls | None = None
    ) -> Callable[[str, BaseModel], Awaitable[AsyncOutputModel]]:
        """``async fn(model_name, request) -> AsyncOutputModel``: spawn the request on the Modal class ``cls``.

        The job gets its id and is recorded in the job index exactly as ``/predict_async`` does
        (`modalkit.ModalRunner.submit_async`), so ``GET /jobs/{job_id}`` of the web endpoints finds it.

        Args:
            cls: The ``@app.cls`` class (or an instance of it).
            calls: The Modal call layer (tests replace Modal's cloud here).
        """
        runner = _LazyRunner(cls, calls)

        async def fn(model_name: str, input_data: BaseModel) -> AsyncOutputModel:
            request = input_data if isinstance(input_data, AsyncInputModel) else AsyncInputModel(message=input_data)
            return AsyncOutputModel(job_id=await runner.get().submit_async(model_name, request))

        return fn

    @staticmethod
    def sync_call(cls: Any, *, calls: ModalCalls | None = None) -> Callable[[str, BaseModel], Awaitable[BaseModel]]:
        """``async fn(model_name, request) -> output``: run one request on the Modal class ``cls`` and wait.

        An input the pipeline refused raises ``fastapi.HTTPException`` 422 with its message; one that failed
        inside the service raises 500 (the earlier ``process_request`` raised 500 for both).

        Args:
            cls: The ``@app.cls`` class (or an instance of it).
            calls: The Modal call layer (tests replace Modal's cloud here).
        """
        runner = _LazyRunner(cls, calls)

        async def fn(model_name: str, input_data: BaseModel) -> BaseModel:
            item = input_data.message if isinstance(input_data, SyncInputModel) else input_data
            result = await runner.get().predict(model_name, item)
            if isinstance(result, ItemError):
                from fastapi import HTTPException

                raise HTTPException(status_code=422 if result.kind == "input" else 500, detail=result.error)
            return result

        return fn

    # -- helpers (plain methods: Modal only sees the lifecycle hooks and the batched method) ------------------

    def _queue_backend(self) -> QueueBackend | None:
        return queue_backend_of(self)

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
        results = worker.run_messages([item.message for item in items], async_jobs, [0] * len(items))
        if async_jobs:
            self._wait_for_deliveries([job_id for _, job_id in async_jobs.values()])
        return results

    def _wait_for_deliveries(self, job_ids: list[str]) -> None:
        """Return only once the queue has these results: a container lost after the return loses none of them.

        The sender's outbox is this container's memory, and Modal may lose the container (preemption, a crash,
        scale-down without the exit hook) at any moment after the batch returned. A queue slower than
        ``drain_timeout_seconds`` leaves the rest to the sender (and the result in the FunctionCall).
        """
        timeout = self.modal_utils.app_settings.server_config.drain_timeout_seconds
        left = self._modalkit_sender.wait_for_jobs(job_ids, timeout)
        if left:
            logger.error(
                "async results of %d job(s) not yet acknowledged by the queue after %ss; still being retried from "
                "this container's memory (lost if the container is): %s",
                len(left),
                timeout,
                ", ".join(sorted(left)),
                extra={"job_ids": sorted(left)},
            )

    def _reload_volumes_if_due(self, worker: Worker) -> None:
        config = self.modal_utils
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


def queue_backend_of(owner: Any) -> QueueBackend | None:
    """The backend a ModalService's ``queue_backend`` attribute names (both runtimes use it), or ``None`` for
    the one ``queue_config`` names. ``owner`` is the class or an instance (the earlier ``__init__`` pattern sets
    it on the instance). A class is instantiated; an earlier-style backend (``send_message``) is adapted with
    `LegacyQueueBackend`."""
    backend = owner.queue_backend
    if backend is None:
        return None
    if isinstance(backend, type):
        backend = backend()
    if not hasattr(backend, "send") and hasattr(backend, "send_message"):
        return LegacyQueueBackend(backend)
    queue_backend: QueueBackend = backend
    return queue_backend


def service_class(app_cls: Any) -> type[ModalService] | None:
    """The `ModalService` subclass behind an ``@app.cls`` object (or the class itself); ``None`` for any other.

    Uses only public behaviour: a local ``modal.Cls`` answers attribute reads from the class it wraps.
    """
    found = getattr(app_cls, "_modalkit_service_class", None)
    return found if isinstance(found, type) and issubclass(found, ModalService) else None


def check_service_class(cls: type[Any], instance: object = None) -> None:
    """Refuse a ModalService subclass that lacks what it needs, with the line to add.

    Args:
        cls: The class.
        instance: An instance of it, whose own attributes count too (the earlier ``__init__`` pattern sets
            ``self.model_name`` and may set ``self.modal_utils``).

    Raises:
        ServiceDefinitionError: ``inference_implementation``, ``modal_utils`` or a ``model_name`` parameter is
            missing, or the configured ``deployment_config.concurrency`` was not applied to the class.
    """
    name = cls.__name__
    owner: Any = cls if instance is None else instance
    impl = getattr(owner, "inference_implementation", None)
    if not (isinstance(impl, type) and issubclass(impl, InferencePipeline)):
        raise ServiceDefinitionError(
            f"{name}.inference_implementation must be your InferencePipeline subclass "
            f"(add `inference_implementation = MyPipeline` to {name})"
        )
    if not isinstance(getattr(owner, "modal_utils", None), ModalConfig):
        raise ServiceDefinitionError(f"{name}.modal_utils must be a ModalConfig (add `modal_utils = config` to {name})")
    if instance is not None and isinstance(instance.__dict__.get("model_name"), str):
        return  # set by the earlier __init__ pattern (outside Modal)
    if "model_name" not in getattr(cls, "__annotations__", {}) and "model_name" not in cls.__dict__:
        raise ServiceDefinitionError(
            f'{name} must declare `model_name: str = modal.parameter(default="...")` itself '
            "(Modal ignores parameters declared only on a base class)"
        )
    owner.modal_utils.check_concurrency_applied(cls)


def _stop_fetching_inputs(exc: BaseException) -> None:
    """The Worker's ``on_fatal``: this container's GPU is unusable, so Modal should send it no more inputs."""
    try:
        modal.experimental.stop_fetching_inputs()
    except Exception:
        # Outside a Modal container (``.local()``, tests) there is no input stream to stop.
        logger.warning("fatal error outside a Modal container; nothing to stop", exc_info=True)


class _EarlierConstructor:
    """Where ``super().__init__(queue_backend=...)`` lands in a subclass that has its own ``__init__``."""

    def __init__(self, queue_backend: Any = None) -> None:
        if queue_backend is not None:
            self.queue_backend = queue_backend


class _LazyRunner:
    """The `ModalRunner` behind ``async_call``/``sync_call``, built at the first call (making the function reads
    nothing, as before)."""

    def __init__(self, app_cls: Any, calls: ModalCalls | None) -> None:
        self.app_cls = app_cls
        self.calls = calls
        self._runner: ModalRunner | None = None

    def get(self) -> ModalRunner:
        if self._runner is None:
            from modalkit._web import ModalRunner, _user_class, service_class

            app_cls = service_class(self.app_cls)
            impl = _user_class(app_cls).inference_implementation
            try:
                _, output_model = impl.io_models()
            except Exception:
                output_model = InferenceOutputModel  # an unparameterised pipeline, as the earlier docs wrote them
            self._runner = ModalRunner(app_cls, output_model, calls=self.calls)
        return self._runner
