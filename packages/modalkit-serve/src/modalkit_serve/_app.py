"""create_app: the FastAPI service every modalkit user talks to, over any `Runner`."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime, and they refer
# to objects local to create_app (the model_name query description).

import asyncio
import contextlib
import importlib.metadata
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Receive, Scope, Send

from modalkit_auth import Authenticator
from modalkit_config import QUEUE_NAME_PATTERN, ConfigError, ConfigIssue, Settings
from modalkit_pipeline import AsyncOutputModel, ItemError
from modalkit_serve._asgi import (
    REQUEST_INFO_KEY,
    UNSUPPORTED_MEDIA_TYPE,
    FastHandler,
    ServeMiddleware,
    StreamFastHandler,
    is_json_content_type,
)
from modalkit_serve._docs import add_offline_docs
from modalkit_serve._forms import FormReader, form_openapi, is_form_content_type
from modalkit_serve._jobs import JobStatus, job_status_json
from modalkit_serve._metrics import CONTENT_TYPE_LATEST, ServeMetrics
from modalkit_serve._routes import Handler, Reply, Routes, error_reply
from modalkit_serve._runner import ManagedRunner, Runner
from modalkit_serve._streams import SSE_HEADERS, EventStream, StreamError
from modalkit_serve.errors import JobNotFoundError, ServeError

__all__ = ["AuthenticatorLike", "ErrorResponse", "create_app"]

logger = logging.getLogger("modalkit.serve")

JSON = "application/json"
T = TypeVar("T")
ROUTES = frozenset(
    {
        "/predict_sync",
        "/predict_batch",
        "/predict_async",
        "/predict_stream",
        "/jobs/{job_id}",
        "/health",
        "/ready",
        "/metrics",
    }
)
_JOB_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
# Modal's proxy-auth headers, as modalkit_auth.Authenticator.check names its arguments.
_MODAL_KEY = b"modal-key"
_MODAL_SECRET = b"modal-secret"


class AuthenticatorLike(Protocol):
    """What the app uses of `modalkit_auth.Authenticator`."""

    dependency: Callable[..., Awaitable[None]]
    protect_metrics: bool

    @property
    def ready(self) -> bool:
        """Whether keys are loaded."""
        ...

    async def start(self) -> None:
        """Fetch keys and keep them fresh."""
        ...

    async def stop(self) -> None:
        """Stop refreshing."""
        ...


class ErrorResponse(BaseModel):
    """The body of every error answer except 422 (which lists the invalid fields)."""

    model_config = ConfigDict(extra="allow")

    detail: str
    """What went wrong, for a person."""
    status: str | None = None
    """``error`` when the pipeline raised on the input (500 from /predict_sync)."""
    error: str | None = None
    """The exception's type and message, when the pipeline raised on the input (500 from /predict_sync)."""


class _ServeApp(FastAPI):
    """FastAPI with modalkit's ASGI layer outside its whole middleware stack."""

    serve_layer: ServeMiddleware
    _telemetry_checked = -1.0
    _telemetry_on = True

    def build_middleware_stack(self) -> ASGIApp:
        self.serve_layer.app = super().build_middleware_stack()
        return self.serve_layer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI asks OpenTelemetry on every request whether tracing is configured (several environment
        # lookups); the answer changes only when the process configures OpenTelemetry, so ask once a second.
        # With it on, or for anything but plain HTTP, FastAPI's own entry point runs as usual.
        if scope["type"] == "http" and not self.root_path and not self._telemetry_enabled():
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            scope["app"] = self
            await self.middleware_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _telemetry_enabled(self) -> bool:
        now = time.monotonic()
        if now - self._telemetry_checked >= 1.0:
            telemetry = getattr(self, "_native_telemetry", None)
            enabled = getattr(telemetry, "enabled", None)
            self._telemetry_on = True if enabled is None else bool(enabled())
            self._telemetry_checked = now
        return self._telemetry_on


def create_app(
    runner: Runner,
    input_model: type[BaseModel],
    output_model: type[BaseModel],
    settings: Settings,
    authenticator: AuthenticatorLike | None = None,
    *,
    metrics: ServeMetrics | None = None,
    title: str | None = None,
    fast_path: bool = True,
    chunk_model: type[BaseModel] | None = None,
) -> FastAPI:
    """Build the HTTP service.

    Routes: ``POST /predict_sync``, ``POST /predict_batch``, ``POST /predict_async``, ``GET /jobs/{job_id}``,
    ``GET /health``, ``GET /ready``, ``GET /metrics``. The predict routes take ``?model_name=`` (optional with
    a single model entry). With an ``authenticator``, its dependency guards the predict and job routes (and
    ``/metrics`` when ``authenticator.protect_metrics``); ``/ready`` also waits for its keys.

    Args:
        runner: Runs the models (`LocalRunner`, or the Modal runner). If it is a `ManagedRunner`, the app's
            lifespan starts and drains it.
        input_model: The pipeline's input model: the body of /predict_sync, items of /predict_batch.
        output_model: The pipeline's output model.
        settings: The service settings (model entries, server limits).
        authenticator: API-key / proxy auth (`modalkit_auth.build_authenticator`), or None.
        metrics: Where metrics go; by default the runner's own (``runner.metrics``) or a new registry.
        title: The OpenAPI title; by default from ``app_prefix``.
        fast_path: Serve the predict routes in modalkit's ASGI layer (same behaviour, a fraction of FastAPI's
            per-request cost). False sends them through FastAPI's routing and dependencies; an authenticator
            other than `modalkit_auth.Authenticator` always does.
        chunk_model: A `StreamingPipeline`'s chunk model: adds ``POST /predict_stream`` (Server-Sent Events),
            which the runner must serve (`modalkit_serve.StreamingRunner`).

    Returns:
        The FastAPI app (serve it with uvicorn, or see `modalkit_serve.run`).
    """
    server = settings.app_settings.server_config
    models = list(settings.model_settings.model_entries)
    if not models:
        raise ConfigError(
            [
                ConfigIssue(
                    None,
                    "model_settings.model_entries",
                    None,
                    "no model to serve; add one, e.g. `my_model: {}` (the key is the model name)",
                )
            ]
        )
    found_metrics = metrics if metrics is not None else getattr(runner, "metrics", None)
    app_metrics = found_metrics if isinstance(found_metrics, ServeMetrics) else ServeMetrics()
    managed = runner if isinstance(runner, ManagedRunner) else None
    routes = Routes(runner, input_model, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        auth_start: asyncio.Task[None] | None = None
        if managed is not None:
            await managed.start()
        if authenticator is not None:
            # In the background: a slow key store (SSM) must not keep /health from answering.
            auth_start = asyncio.create_task(_start_auth(authenticator), name="modalkit-auth-start")
        try:
            yield
        finally:
            if auth_start is not None:
                auth_start.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await auth_start
            if authenticator is not None:
                await authenticator.stop()
            if managed is not None:
                await managed.stop()

    docs_protected = authenticator is not None and bool(getattr(authenticator, "protect_docs", False))
    app = _ServeApp(
        title=title or f"{settings.app_settings.app_prefix} (modalkit)",
        version=importlib.metadata.version("modalkit-serve"),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None if docs_protected else "/openapi.json",
    )
    docs_guard = [Depends(authenticator.dependency)] if docs_protected and authenticator is not None else []
    add_offline_docs(app, dependencies=docs_guard)
    app.state.runner = runner
    app.state.metrics = app_metrics
    app.state.settings = settings
    app.state.authenticator = authenticator

    forms = FormReader(input_model, server.max_file_bytes)
    form_paths = frozenset({"/predict_sync", "/predict_stream"}) if forms.files else frozenset()

    async def form_body(
        chunks: AsyncIterator[bytes], content_type: bytes, origin: str | None, host: str | None
    ) -> bytes | Reply:
        try:
            return await forms.body(chunks, content_type, origin, host)
        except HTTPException as exc:
            return error_reply(exc)

    fast: dict[str, FastHandler] = {}
    streams: dict[str, StreamFastHandler] = {}
    auth_check = None
    if fast_path and (authenticator is None or isinstance(authenticator, Authenticator)):
        fast = {
            "/predict_sync": _bound(routes, routes.predict_sync),
            "/predict_batch": _bound(routes, routes.predict_batch),
            "/predict_async": _bound(routes, routes.predict_async),
        }
        if chunk_model is not None:
            streams["/predict_stream"] = _bound(routes, routes.predict_stream)
        if isinstance(authenticator, Authenticator):
            auth_check = _auth_check(authenticator)
    app.serve_layer = ServeMiddleware(
        None,
        metrics=app_metrics,
        max_body_bytes=server.max_body_bytes,
        routes=ROUTES,
        fast=fast,
        auth_check=auth_check,
        identify=getattr(authenticator, "identity", None),
        streams=streams,
        forms=form_body,
        form_paths=form_paths,
    )
    _add_error_handlers(app)

    protected = [Depends(authenticator.dependency)] if authenticator is not None else []
    metrics_protected = protected if authenticator is not None and authenticator.protect_metrics else []
    documented: list[tuple[type[BaseModel], Any]] = [(input_model, "validation"), (routes.async_model, "validation")]
    if chunk_model is not None:
        documented += [(chunk_model, "serialization"), (StreamError, "serialization")]
    refs, defs = models_json_schema(documented, ref_template="#/components/schemas/{model}")
    if routes.forbids_extra:
        # The document states the policy the routes apply to the input (outputs may carry extra keys), so clients
        # and schema-driven tests do not send extras.
        _, input_defs = models_json_schema([(input_model, "validation")])
        for name in input_defs.get("$defs", {}):
            definition = defs.get("$defs", {}).get(name, {})
            if definition.get("type") == "object" and "properties" in definition:
                definition["additionalProperties"] = False
    input_ref = refs[(input_model, "validation")]
    async_ref = refs[(routes.async_model, "validation")]
    _document_queue_names(_schema_of(defs, async_ref), settings.app_settings.queue_config.allowed_queues)
    errors_doc: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorResponse, "description": "Unknown model_name."},
        413: {"model": ErrorResponse, "description": "Body larger than server_config.max_body_bytes."},
        415: {"model": ErrorResponse, "description": "The body is not sent as JSON (Content-Type)."},
        503: {"model": ErrorResponse, "description": "Not ready, draining, or the queue is full (see Retry-After)."},
        504: {"model": ErrorResponse, "description": "Not answered within server_config.request_timeout_seconds."},
    }
    if authenticator is not None:
        errors_doc[401] = {"model": ErrorResponse, "description": "Missing or wrong credentials."}
    # The routes that take an upload form refuse more ways.
    form_errors_doc = dict(errors_doc)
    if forms.files:
        form_errors_doc[400] = {"model": ErrorResponse, "description": "A malformed multipart/form-data body."}
        form_errors_doc[403] = {"model": ErrorResponse, "description": "A form posted from another site's page."}
        form_errors_doc[413] = {
            "model": ErrorResponse,
            "description": "Body larger than server_config.max_body_bytes, or a file larger than max_file_bytes.",
        }
        form_errors_doc[415] = {
            "model": ErrorResponse,
            "description": "Neither JSON nor a form, or a file of a media type its field does not take.",
        }
    jobs_doc: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "No such job."}}
    if authenticator is not None:
        jobs_doc[401] = errors_doc[401]
    model_query = Query(
        description=f"The model entry to use; optional when only one is configured. Known: {', '.join(models)}."
    )

    async def request_body(request: Request) -> bytes | Response:
        """The JSON body (a form's, on the routes that take forms), or the refusal answer."""
        raw_type = request.headers.get("content-type")
        content_type = None if raw_type is None else raw_type.encode("latin-1")
        if request.url.path in form_paths and is_form_content_type(content_type):
            assert content_type is not None
            result = await form_body(
                request.stream(), content_type, request.headers.get("origin"), request.headers.get("host")
            )
            if isinstance(result, bytes):
                return result
            status, reply, headers = result
            refused = Response(reply, status_code=status, media_type=JSON)
            refused.raw_headers.extend(headers)
            return refused
        if not is_json_content_type(content_type):
            return JSONResponse({"detail": UNSUPPORTED_MEDIA_TYPE}, status_code=415)
        return await request.body()

    async def via_fastapi(request: Request, handler: Handler) -> Response:
        body = await request_body(request)
        if isinstance(body, Response):
            return body
        status, reply, headers = await routes.reply(
            handler, body, request.scope["query_string"], request.scope.get(REQUEST_INFO_KEY)
        )
        response = Response(reply, status_code=status, media_type=JSON)
        response.raw_headers.extend(headers)
        return response

    upload = form_openapi(input_model, _schema_of(defs, input_ref)) if forms.files else None
    sync_doc = _body_doc(input_ref, "One input for the model.", upload)
    # FastAPI documents the 422 (HTTPValidationError) itself; only its description changes here.
    sync_doc["responses"] = {
        "422": {
            "description": "The body is not a valid input (each problem names its field), or the pipeline refused "
            'this input: one problem of type "item_error" at ["body"], its msg the pipeline\'s message.'
        }
    }

    @app.post(
        "/predict_sync",
        response_model=output_model,
        responses={
            **form_errors_doc,
            500: {
                "model": ErrorResponse,
                "description": "The pipeline raised on this input (error: the exception's type and message), "
                "or the service failed running it.",
            },
        },
        dependencies=protected,
        openapi_extra=sync_doc,
        summary="Predict one input",
    )
    async def predict_sync(request: Request, model_name: Annotated[str | None, model_query] = None) -> Response:
        return await via_fastapi(request, routes.predict_sync)

    @app.post(
        "/predict_batch",
        response_model=list[output_model | ItemError],  # type: ignore[valid-type]
        responses=errors_doc,
        dependencies=protected,
        openapi_extra=_body_doc(
            {"type": "array", "items": input_ref, "maxItems": server.max_batch_items},
            "A list of inputs; the answer has one result per input, in order (an item that failed has "
            '`"status": "error"` and does not fail the others).',
        ),
        summary="Predict a list of inputs",
    )
    async def predict_batch(request: Request, model_name: Annotated[str | None, model_query] = None) -> Response:
        return await via_fastapi(request, routes.predict_batch)

    @app.post(
        "/predict_async",
        response_model=AsyncOutputModel,
        status_code=202,
        responses=errors_doc,
        dependencies=protected,
        openapi_extra=_body_doc(async_ref, "The input and where to deliver its result."),
        summary="Queue one input; the result goes to a queue",
    )
    async def predict_async(request: Request, model_name: Annotated[str | None, model_query] = None) -> Response:
        return await via_fastapi(request, routes.predict_async)

    if chunk_model is not None:
        stream_doc = _body_doc(input_ref, "One input for the model.", upload)
        stream_doc["responses"] = {
            "200": {
                "description": "Server-Sent Events: one event per chunk (`data:` the chunk's JSON), then one final "
                '`event: done` (`{"status": "success", "chunks": N}`) or `event: error` (a StreamError; the '
                "chunks sent before it stand). Refusals before the first chunk are JSON answers (422, 404, 503, "
                "504). Closing the connection cancels the stream.",
                "content": {
                    "text/event-stream": {"itemSchema": _sse_item_schema(refs[(chunk_model, "serialization")])}
                },
            },
            "422": sync_doc["responses"]["422"],
        }

        async def stream_via_fastapi(request: Request) -> Response:
            body = await request_body(request)
            if isinstance(body, Response):
                return body
            result = await routes.reply(
                routes.predict_stream, body, request.scope["query_string"], request.scope.get(REQUEST_INFO_KEY)
            )
            if isinstance(result, EventStream):
                response = StreamingResponse(result.frames())
                response.raw_headers = [h for h in response.raw_headers if h[0] != b"content-type"] + SSE_HEADERS
                return response
            status, reply, headers = result
            answer = Response(reply, status_code=status, media_type=JSON)
            answer.raw_headers.extend(headers)
            return answer

        @app.post(
            "/predict_stream",
            response_class=StreamingResponse,
            responses=form_errors_doc,
            dependencies=protected,
            openapi_extra=stream_doc,
            summary="Stream the output of one input (Server-Sent Events)",
        )
        async def predict_stream(request: Request, model_name: Annotated[str | None, model_query] = None) -> Response:
            return await stream_via_fastapi(request)

    @app.get(
        "/jobs/{job_id}",
        response_model=JobStatus[output_model],  # type: ignore[valid-type]
        responses=jobs_doc,
        dependencies=protected,
        summary="The state of an async job, with its result when done",
    )
    async def job_status(request: Request, job_id: str) -> Response:
        if _JOB_ID.fullmatch(job_id) is None:
            raise JobNotFoundError("no job with this id")
        # Another caller's job is answered exactly like an unknown one.
        view = await runner.job_status(job_id, request.scope.get(REQUEST_INFO_KEY))
        if view is None:
            raise JobNotFoundError("no job with this id (unknown, or expired after server_config.job_ttl_seconds)")
        return Response(job_status_json(view.job_id, view.status, view.result), media_type=JSON)

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        summary="Readiness: every model loaded (and auth keys fetched)",
        responses={503: {"model": ErrorResponse, "description": "Not ready yet, or no longer."}},
    )
    async def ready() -> Response:
        problems = []
        if managed is not None and not managed.ready:
            problems.append("models are not all loaded and serving")
        if authenticator is not None and not authenticator.ready:
            problems.append("auth keys are not loaded")
        if problems:
            body = {"status": "not ready", "detail": "; ".join(problems)}
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        dependencies=metrics_protected,
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics_route() -> Response:
        return Response(app_metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if docs_protected:
        # FastAPI's own /openapi.json route takes no dependencies: serve the same document behind auth.
        async def openapi_route() -> JSONResponse:
            return JSONResponse(app.openapi())

        app.add_api_route("/openapi.json", openapi_route, include_in_schema=False, dependencies=docs_guard)
    return app


def _bound(
    routes: Routes, handler: Callable[[bytes, bytes, Any], Awaitable[T]]
) -> Callable[[bytes, bytes, Any], Awaitable[T | Reply]]:
    async def fast(body: bytes, query: bytes, info: Any) -> T | Reply:
        return await routes.reply(handler, body, query, info)

    return fast


def _auth_check(authenticator: Authenticator) -> Callable[[Sequence[tuple[bytes, bytes]]], Reply | None]:
    """The authenticator's own check, fed from the raw headers (the fast path has no FastAPI dependencies)."""
    api_header = authenticator.header.lower().encode("latin-1")

    def header(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
        value = headers.get(name)
        return None if value is None else value.decode("latin-1")

    def check(raw: Sequence[tuple[bytes, bytes]]) -> Reply | None:
        headers = dict(raw)
        try:
            authenticator.check_duplicates(raw)
            authenticator.check(
                header(headers, api_header), header(headers, _MODAL_KEY), header(headers, _MODAL_SECRET)
            )
        except HTTPException as exc:
            return error_reply(exc)
        return None

    return check


async def _start_auth(authenticator: AuthenticatorLike) -> None:
    try:
        await authenticator.start()
    except Exception:
        logger.exception("auth failed to start; protected routes answer 503 and /ready stays not ready")


def _sse_item_schema(chunk_ref: dict[str, Any]) -> dict[str, Any]:
    """The events of ``/predict_stream`` (OpenAPI 3.2's ``itemSchema``, as FastAPI writes it for SSE)."""

    def event(name: str | None, data: dict[str, Any], description: str) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "data": {"type": "string", "contentMediaType": JSON, "contentSchema": data},
        }
        properties["event"] = {"const": name} if name is not None else {"type": "string", "const": "message"}
        return {"type": "object", "description": description, "required": ["data"], "properties": properties}

    done = {
        "type": "object",
        "required": ["status", "chunks"],
        "properties": {"status": {"const": "success"}, "chunks": {"type": "integer", "minimum": 0}},
    }
    return {
        "oneOf": [
            event(None, chunk_ref, "A chunk (no event field: the default `message` event)."),
            event("done", done, "The stream finished; nothing follows."),
            event("error", {"$ref": "#/components/schemas/StreamError"}, "The stream failed; nothing follows."),
        ]
    }


def _body_doc(schema: dict[str, Any], description: str, form: dict[str, Any] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": schema}}
    if form is not None:
        # Files as base64 in JSON, or uploaded as a form (Swagger's "Try it out" shows a file picker for it).
        content["multipart/form-data"] = form
    return {"requestBody": {"required": True, "description": description, "content": content}}


def _document_queue_names(schema: dict[str, Any], allowed: Sequence[str] | None) -> None:
    """State in the document the queue names `Routes.check_queues` accepts (empty: no delivery)."""
    for field in ("success_queue", "failure_queue"):
        prop = schema.get("properties", {}).get(field)
        if prop is None:
            continue
        if allowed is not None:
            prop["enum"] = ["", *allowed]
        else:
            prop["pattern"] = QUEUE_NAME_PATTERN


def _schema_of(defs: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, Any]:
    """The schema a ``{"$ref": "#/components/schemas/Name"}`` points at, among ``models_json_schema``'s defs."""
    name = str(ref.get("$ref", "")).rsplit("/", 1)[-1]
    found: dict[str, Any] = defs.get("$defs", {}).get(name, dict(ref))
    return found


def _add_error_handlers(app: FastAPI) -> None:
    async def serve_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServeError)
        status, body, headers = error_reply(exc)
        response = Response(body, status_code=status, media_type=JSON)
        response.raw_headers.extend(headers)
        return response

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Reached only if an error escapes the ASGI layer, which already answers 500 itself.
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(Exception, internal_error)
