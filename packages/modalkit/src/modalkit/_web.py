"""The web side on Modal: `create_web_endpoints` builds serve's FastAPI app over a `ModalRunner`.

The web function and the inference class are two Modal objects (a class with a ``@modal.batched`` method may
have no other Modal method): the web function validates requests and forwards them to the class's batched
``process_request`` method, where Modal batches them.

- sync: ``process_request.remote.aio(request)`` (single items; Modal groups them into batches);
- batch: ``process_request.map.aio(requests)``;
- async: the web function makes the job id (`modalkit_auth.new_job_id`), spawns an `AsyncJobInput` carrying it
  with ``process_request.spawn.aio(request)``, records ``job_id -> FunctionCall id`` in the job index, then
  answers 202. The container delivers the result under that same id (see `modalkit._jobs` for why the
  FunctionCall id cannot be the job id);
- ``/jobs/{id}``: the job index gives the FunctionCall id, then ``modal.FunctionCall.from_id(call_id)
  .get.aio(timeout=0)``; the built-in ``TimeoutError`` means the call is still running.

`ModalCalls` holds the calls that reach Modal's cloud and the job index, so tests can replace Modal's cloud (and
nothing else) with a layer that runs the class in-process through ``.local()`` and an in-memory index.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from modalkit._jobs import (
    AsyncJobInput,
    JobIndex,
    ModalDictJobIndex,
    index_entry,
    is_job_id,
    job_index_name,
    read_index_entry,
)
from modalkit._service import BATCHED_METHOD, check_service_class
from modalkit._service import service_class as _service_behind
from modalkit_auth import new_job_id
from modalkit_pipeline import AsyncInputModel, ItemError, SyncInputModel, is_failure
from modalkit_serve import JobView, safe_error_message, same_owner
from modalkit_serve.errors import NotReadyError, RequestTimeoutError, ServeError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modalkit_serve import RequestInfo

__all__ = [
    "ModalCalls",
    "ModalRunner",
    "ModalStreamingRunner",
    "WebEndpoints",
    "capture_web_endpoints",
    "create_web_endpoints",
    "service_class",
]

logger = logging.getLogger("modalkit")


class ModalCalls:
    """What `ModalRunner` reaches in Modal's cloud: calls on the bound batched method of one model
    (``AppCls(model_name=...).process_request``), and the job index.

    Args:
        job_index: Where ``job_id -> FunctionCall id`` is kept. ``None``: the runner uses a `ModalDictJobIndex`
            named after the app (`job_index_name`).
    """

    def __init__(self, job_index: JobIndex | None = None) -> None:
        self.job_index = job_index

    async def remote(self, method: Any, request: BaseModel) -> Any:
        """Run one request and wait for its result."""
        return await method.remote.aio(request)

    async def map(self, method: Any, requests: Sequence[BaseModel]) -> list[Any]:
        """Run several requests; one result (or the exception it raised) per request, in order."""
        return [r async for r in method.map.aio(list(requests), order_outputs=True, return_exceptions=True)]

    def stream(self, method: Any, request: BaseModel) -> AsyncIterator[Any]:
        """Start one stream on the stream class's generator method: its values, as the container yields them.
        Closing the iterator (``aclose``) ends the call."""
        gen: AsyncIterator[Any] = method.remote_gen.aio(request)
        return gen

    async def spawn(self, method: Any, request: BaseModel) -> str:
        """Start one request without waiting; returns the FunctionCall id."""
        call = await method.spawn.aio(request)
        return str(call.object_id)

    async def cancel(self, call_id: str) -> None:
        """Cancel a spawned call (its job could not be recorded, so no client knows its id)."""
        import modal

        await modal.FunctionCall.from_id(call_id).cancel.aio()

    async def poll(self, call_id: str) -> Any:
        """The result of a spawned call.

        Raises:
            TimeoutError: (the built-in one) the call has not finished yet.
            LookupError: no such call, or its result expired.
            Exception: the call itself failed.
        """
        import modal
        import modal.exception

        try:
            return await modal.FunctionCall.from_id(call_id).get.aio(timeout=0)
        except (modal.exception.NotFoundError, modal.exception.OutputExpiredError, modal.exception.InvalidError):
            raise LookupError(call_id) from None


class ModalRunner:
    """serve's `Runner` over a Modal class: what the web function runs.

    Args:
        app_cls: The ``@app.cls`` class (a `ModalService` subclass).
        output_model: The pipeline's output model (results are re-validated into it when they arrive as dicts).
        calls: The Modal call layer (default `ModalCalls`). When it has no ``job_index``, the runner uses a
            `ModalDictJobIndex` named after the app (``app_cls.modal_utils.app_name``).
        request_timeout_seconds: A sync or batch request still unanswered after this gets 504.

    Attributes:
        job_index: The job index in use.
    """

    def __init__(
        self,
        app_cls: Any,
        output_model: type[BaseModel],
        *,
        calls: ModalCalls | None = None,
        request_timeout_seconds: float = 60.0,
    ) -> None:
        self.app_cls = app_cls
        self.output_model = output_model
        self.calls = calls if calls is not None else ModalCalls()
        given = self.calls.job_index
        self.job_index: JobIndex = (
            given if given is not None else ModalDictJobIndex(job_index_name(_user_class(app_cls).modal_utils.app_name))
        )
        self.request_timeout_seconds = request_timeout_seconds
        self._methods: dict[str, Any] = {}

    def method(self, model_name: str) -> Any:
        """The batched method of the class instance for ``model_name`` (one handle per model, reused)."""
        handle = self._methods.get(model_name)
        if handle is None:
            handle = getattr(self.app_cls(model_name=model_name), BATCHED_METHOD)
            self._methods[model_name] = handle
        return handle

    async def predict(self, model_name: str, item: BaseModel, info: RequestInfo | None = None) -> BaseModel:
        """One input -> its output, or an `ItemError` when it failed (``kind="internal"`` when the call did)."""
        request = _sync_request(item)
        try:
            result = await self._timed(self.calls.remote(self.method(model_name), request))
        except RequestTimeoutError:
            raise
        except Exception as exc:
            return _call_failed(exc)
        return self._result(result)

    async def predict_many(
        self, model_name: str, items: Sequence[BaseModel], info: RequestInfo | None = None
    ) -> list[BaseModel]:
        """Several inputs -> one result each, in order."""
        if not items:
            return []
        requests = [_sync_request(item) for item in items]
        results = await self._timed(self.calls.map(self.method(model_name), requests))
        return [_call_failed(r) if isinstance(r, BaseException) else self._result(r) for r in results]

    async def submit_async(
        self, model_name: str, request: AsyncInputModel[Any], info: RequestInfo | None = None
    ) -> str:
        """Spawn the request on Modal under a new job id, record the job in the index, return the id.

        Raises:
            NotReadyError: (503) the job index could not record the job; its call was cancelled.
        """
        job_id = new_job_id()
        call_id = await self.calls.spawn(self.method(model_name), _job_request(request, job_id))
        try:
            await self.job_index.put(job_id, index_entry(call_id, None if info is None else info.owner))
        except Exception as exc:
            await self._cancel_unrecorded(job_id, call_id)
            raise NotReadyError(
                f"the job could not be recorded in the job index, so it was not accepted; retry later "
                f"({safe_error_message(exc)})"
            ) from None
        return job_id

    async def job_status(self, job_id: str, info: RequestInfo | None = None) -> JobView | None:
        """Look the job up in the index and poll its FunctionCall: running, finished (success or error), or
        unknown (None). A malformed id is unknown without a lookup; another caller's job is unknown too."""
        if not is_job_id(job_id):
            return None
        entry = await self.job_index.get(job_id)
        if entry is None:
            return None
        call_id, owner = read_index_entry(entry)
        if not same_owner(owner, None if info is None else info.owner):
            return None
        try:
            result = await self.calls.poll(call_id)
        except TimeoutError:
            return JobView(job_id, "running", None)
        except LookupError:
            return None
        except Exception as exc:
            return JobView(job_id, "error", _call_failed(exc))
        out = self._result(result)
        failed = is_failure(out)
        return JobView(job_id, "error" if failed else "success", out)

    async def _cancel_unrecorded(self, job_id: str, call_id: str) -> None:
        logger.error("job %s (call %s) could not be recorded in the job index; cancelling it", job_id, call_id)
        try:
            await self.calls.cancel(call_id)
        except Exception as exc:
            # The call may still run: its result reaches the queue under a job id no client was given.
            logger.error("cancelling call %s of unrecorded job %s failed: %s", call_id, job_id, safe_error_message(exc))

    async def _timed(self, call: Any) -> Any:
        try:
            return await asyncio.wait_for(call, timeout=self.request_timeout_seconds)
        except TimeoutError:
            raise RequestTimeoutError(
                f"no answer from Modal within {self.request_timeout_seconds}s (server_config.request_timeout_seconds)"
            ) from None

    def _result(self, result: Any) -> BaseModel:
        # An ItemError from the container keeps its kind (the Worker's "internal" ones, the pipeline's "input"
        # ones), so serve's routes answer 500 or 422 exactly as they do locally.
        if isinstance(result, BaseModel):
            return result
        if isinstance(result, dict):
            if result.get("status") == "error":
                return ItemError.model_validate(result)
            return self.output_model.model_validate(result)
        return ItemError(error=f"unexpected result of type {type(result).__name__} from Modal", kind="internal")


class ModalStreamingRunner(ModalRunner):
    """A `ModalRunner` that also streams (``/predict_stream``), through a `ModalStreamService` class.

    Args:
        app_cls: The batched ``@app.cls`` class (sync, batch and async requests).
        output_model: The pipeline's output model.
        stream_cls: The ``@app.cls`` `ModalStreamService` class; each stream is one ``process_stream.remote_gen``
            call on it.
        chunk_model: The pipeline's chunk model (chunks that arrive as dicts are validated into it).
        calls: The Modal call layer.
        request_timeout_seconds: A stream with no chunk for this long ends with a timeout error.
    """

    def __init__(
        self,
        app_cls: Any,
        output_model: type[BaseModel],
        *,
        stream_cls: Any,
        chunk_model: type[BaseModel],
        calls: ModalCalls | None = None,
        request_timeout_seconds: float = 60.0,
    ) -> None:
        super().__init__(app_cls, output_model, calls=calls, request_timeout_seconds=request_timeout_seconds)
        self.stream_cls = stream_cls
        self.chunk_model = chunk_model
        self._stream_methods: dict[str, Any] = {}

    def stream_method(self, model_name: str) -> Any:
        """The stream class's ``process_stream`` for ``model_name`` (one handle per model, reused)."""
        handle = self._stream_methods.get(model_name)
        if handle is None:
            from modalkit._streaming import STREAM_METHOD

            handle = getattr(self.stream_cls(model_name=model_name), STREAM_METHOD)
            self._stream_methods[model_name] = handle
        return handle

    def predict_stream(self, model_name: str, item: BaseModel, info: RequestInfo | None = None) -> _RemoteStream:
        """Start one stream on Modal; its chunks come back as the container's batches make them."""
        if info is not None:
            info.model = model_name
        return _RemoteStream(self, self.calls.stream(self.stream_method(model_name), _sync_request(item)))


class _RemoteStream:
    """serve's `ChunkStream` over a ``remote_gen`` call: chunks, then maybe one failed result; ``aclose`` ends
    the call (Modal cancels the input, and the container's generator cancels the stream in its batch)."""

    def __init__(self, runner: ModalStreamingRunner, values: AsyncIterator[Any]) -> None:
        self._runner = runner
        self._values = values
        self._done = False

    def __aiter__(self) -> _RemoteStream:
        return self

    async def __anext__(self) -> BaseModel:
        if self._done:
            raise StopAsyncIteration
        try:
            value = await self._runner._timed(self._values.__anext__())
        except StopAsyncIteration:
            self._done = True
            raise
        except ServeError:
            self._done = True  # refused, timed out, or shutting down: the route answers with its status
            raise
        except Exception as exc:
            self._done = True
            return _call_failed(exc)
        event = self._event(value)
        if is_failure(event):
            self._done = True
        return event

    async def aclose(self) -> None:
        self._done = True
        aclose = getattr(self._values, "aclose", None)
        if aclose is not None:
            await aclose()

    def _event(self, value: Any) -> BaseModel:
        chunk_model = self._runner.chunk_model
        if isinstance(value, chunk_model | ItemError):
            return value
        if isinstance(value, dict):
            if value.get("status") == "error":
                return ItemError.model_validate(value)
            return chunk_model.model_validate(value)
        if isinstance(value, BaseModel):
            return chunk_model.model_validate(value.model_dump())
        return ItemError(error=f"unexpected chunk of type {type(value).__name__} from Modal", kind="internal")


def _sync_request(item: BaseModel) -> SyncInputModel[Any]:
    # Parametrized with the item's own class, so the container validates and pickles it as that model.
    wrapper: Any = SyncInputModel[type(item)]  # type: ignore[misc]
    return cast("SyncInputModel[Any]", wrapper(message=item))


def _job_request(request: AsyncInputModel[Any], job_id: str) -> AsyncJobInput[Any]:
    # Parametrized with the message's own class, like _sync_request; the fields are already validated.
    wrapper: Any = AsyncJobInput[type(request.message)]  # type: ignore[misc]
    job = wrapper(
        message=request.message,
        success_queue=request.success_queue,
        failure_queue=request.failure_queue,
        meta=request.meta,
        job_id=job_id,
    )
    return cast("AsyncJobInput[Any]", job)


def _call_failed(exc: BaseException) -> ItemError:
    # The call itself failed (network, container lost, a model that failed in @modal.enter, ...): the server's
    # problem, never the input's. Its message can name files inside the container, so callers get the exception's
    # type only; the log has the whole message.
    logger.error("the Modal call failed: %s", safe_error_message(exc))
    return ItemError(
        error=f"the Modal call failed ({type(exc).__name__}); the server log has the details", kind="internal"
    )


# --- create_web_endpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebEndpoints:
    """What a call to `create_web_endpoints` asked for (recorded by `capture_web_endpoints`)."""

    app_cls: Any
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    stream_cls: Any = None


_capture: contextvars.ContextVar[list[WebEndpoints] | None] = contextvars.ContextVar("modalkit_capture", default=None)


@contextlib.contextmanager
def capture_web_endpoints() -> Iterator[list[WebEndpoints]]:
    """Within this block, `create_web_endpoints` records its arguments and builds nothing.

    ``modalkit serve`` calls the app file's web function in this mode to learn which class and models it serves,
    then serves them locally.
    """
    found: list[WebEndpoints] = []
    token = _capture.set(found)
    try:
        yield found
    finally:
        _capture.reset(token)


def create_web_endpoints(
    app_cls: Any,
    input_model: type[BaseModel],
    output_model: type[BaseModel],
    *,
    calls: ModalCalls | None = None,
    stream_cls: Any = None,
) -> FastAPI:
    """The HTTP service for a Modal class: call it from your ``@modal.asgi_app`` web function.

    Args:
        app_cls: The ``@app.cls`` class, a `ModalService` subclass. An instance of it is accepted too, as the
            earlier modalkit took one; the class behind it is used.
        input_model: The pipeline's input model.
        output_model: The pipeline's output model.
        calls: The Modal call layer (tests replace Modal's cloud here).
        stream_cls: For a `StreamingPipeline`: the ``@app.cls`` `ModalStreamService` class that streams it.
            Adds ``POST /predict_stream`` (Server-Sent Events), each stream one ``process_stream.remote_gen`` call.

    Returns:
        serve's FastAPI app (routes, limits, auth, metrics) over a `ModalRunner`. API-key auth applies as
        configured; Modal proxy auth (``deployment_config.secure``) is enforced by Modal's proxy.
    """
    found = _capture.get()
    if found is not None:
        found.append(WebEndpoints(app_cls, input_model, output_model, stream_cls))
        return None  # type: ignore[return-value]  # capture mode: nothing is served
    from modalkit_auth import build_authenticator
    from modalkit_serve import create_app

    app_cls = service_class(app_cls)
    user_cls = _user_class(app_cls)
    check_service_class(user_cls)
    settings = user_cls.modal_utils.settings
    timeout = settings.app_settings.server_config.request_timeout_seconds
    runner: ModalRunner
    chunk_model: type[BaseModel] | None = None
    if stream_cls is None:
        runner = ModalRunner(app_cls, output_model, calls=calls, request_timeout_seconds=timeout)
    else:
        stream_cls = service_class(stream_cls)
        chunk_model = _stream_service(stream_cls).inference_implementation.chunk_model()
        runner = ModalStreamingRunner(
            app_cls,
            output_model,
            stream_cls=stream_cls,
            chunk_model=chunk_model,
            calls=calls,
            request_timeout_seconds=timeout,
        )
    authenticator = build_authenticator(settings.app_settings, on_modal=True)
    return create_app(runner, input_model, output_model, settings, authenticator, chunk_model=chunk_model)


def _stream_service(stream_cls: Any) -> Any:
    """The user's `ModalStreamService` subclass behind ``stream_cls``, checked.

    Raises:
        ServiceDefinitionError: it is not a `ModalStreamService` subclass, lacks what one needs, or its pipeline
            does not stream.
    """
    from modalkit._streaming import ModalStreamService
    from modalkit.errors import ServiceDefinitionError

    user_cls = _service_behind(stream_cls)
    if user_cls is None or not issubclass(user_cls, ModalStreamService):
        name = getattr(user_cls or stream_cls, "__name__", type(stream_cls).__name__)
        raise ServiceDefinitionError(
            f"stream_cls={name} must be a ModalStreamService subclass under @config.stream_cls(app) "
            "(a batched ModalService cannot stream: modal 1.x refuses generators under @modal.batched)"
        )
    check_service_class(user_cls)
    impl = user_cls.inference_implementation
    if not impl.is_streaming():
        raise ServiceDefinitionError(
            f"{user_cls.__name__}.inference_implementation ({impl.__name__}) does not stream: "
            "stream_cls needs a StreamingPipeline"
        )
    return user_cls


def service_class(app_cls: Any) -> Any:
    """The ``modal.Cls`` (or plain class) given, or behind an instance of it (``TranslationApp()``)."""
    import modal

    if isinstance(app_cls, modal.cls.Obj):
        return _modal_cls_of_instance(app_cls)
    if not isinstance(app_cls, type | modal.Cls):
        return type(app_cls)  # an instance of a plain ModalService subclass
    return app_cls


def _modal_cls_of_instance(obj: Any) -> Any:
    """The ``modal.Cls`` an instance (``TranslationApp()``) was made from.

    modal 1.x has no public way to this (an ``Obj`` forwards attribute reads to the user's instance, not to its
    ``Cls``), so this is modalkit's one use of a private modal API, kept here alone and guarded:
    ``test_modal_contract.py`` pins it, and a modal release that moves it gets a message, not an AttributeError.

    Raises:
        TypeError: this modal version keeps the class elsewhere (pass the class itself instead).
    """
    try:
        from modal._utils.async_utils import synchronizer

        wrapped = synchronizer._translate_in(obj)  # type: ignore[no-untyped-call]
        return synchronizer._translate_out(wrapped._cls)  # type: ignore[no-untyped-call]
    except (ImportError, AttributeError) as exc:
        raise TypeError(
            "create_web_endpoints: cannot find the class behind this instance with this modal version "
            f"({type(exc).__name__}: {exc}); pass the @app.cls class itself, e.g. app_cls=TranslationApp"
        ) from None


def _user_class(app_cls: Any) -> type[Any]:
    """The user's `ModalService` subclass behind a ``modal.Cls`` (or the class itself)."""
    user_cls = _service_behind(app_cls)
    if user_cls is not None:
        return user_cls
    if isinstance(app_cls, type):
        return app_cls  # not a ModalService: check_service_class says what it lacks
    raise TypeError(f"expected the @app.cls class (a ModalService subclass), got {type(app_cls).__name__}")
