"""create_app: the FastAPI service every modalkit user talks to, over any `Runner`."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime, and they refer
# to objects local to create_app (the model_name query description).
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema

from modalkit_config import Settings
from modalkit_pipeline import AsyncInputModel, AsyncOutputModel, InferenceOutputModel, ItemError
from modalkit_serve._asgi import REQUEST_INFO_KEY, RequestInfo, ServeMiddleware
from modalkit_serve._jobs import JobStatus, job_status_json
from modalkit_serve._metrics import CONTENT_TYPE_LATEST, ServeMetrics
from modalkit_serve._runner import ManagedRunner, Runner
from modalkit_serve.errors import JobNotFoundError, QueueFullError, ServeError, UnknownModelError

__all__ = ["AuthenticatorLike", "ErrorResponse", "create_app"]

logger = logging.getLogger("modalkit.serve")

JSON = "application/json"
ROUTES = frozenset(
    {"/predict_sync", "/predict_batch", "/predict_async", "/jobs/{job_id}", "/health", "/ready", "/metrics"}
)
_JOB_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
# Tokens of a JSON text that matter for nesting: strings (skipped whole, so brackets inside them do not count)
# and brackets.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


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
    """``error`` when the pipeline failed on the input (500 from /predict_sync)."""
    error: str | None = None
    """The pipeline's error message (500 from /predict_sync)."""


def create_app(
    runner: Runner,
    input_model: type[BaseModel],
    output_model: type[BaseModel],
    settings: Settings,
    authenticator: AuthenticatorLike | None = None,
    *,
    metrics: ServeMetrics | None = None,
    title: str | None = None,
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

    Returns:
        The FastAPI app (serve it with uvicorn, or see `modalkit_serve.run`).
    """
    server = settings.app_settings.server_config
    models = list(settings.model_settings.model_entries)
    default_model = models[0] if len(models) == 1 else None
    found_metrics = metrics if metrics is not None else getattr(runner, "metrics", None)
    app_metrics = found_metrics if isinstance(found_metrics, ServeMetrics) else ServeMetrics()
    managed = runner if isinstance(runner, ManagedRunner) else None

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

    app = FastAPI(
        title=title or f"{settings.app_settings.app_prefix} (modalkit)",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.runner = runner
    app.state.metrics = app_metrics
    app.state.settings = settings
    app.add_middleware(ServeMiddleware, metrics=app_metrics, max_body_bytes=server.max_body_bytes, routes=ROUTES)
    _add_error_handlers(app)

    protected = [Depends(authenticator.dependency)] if authenticator is not None else []
    metrics_protected = protected if authenticator is not None and authenticator.protect_metrics else []
    async_model: type[BaseModel] = AsyncInputModel[input_model]  # type: ignore[valid-type]
    batch_adapter: TypeAdapter[list[BaseModel]] = TypeAdapter(
        Annotated[list[input_model], Field(max_length=server.max_batch_items)]  # type: ignore[valid-type,arg-type]
    )
    refs, defs = models_json_schema(
        [(input_model, "validation"), (async_model, "validation")], ref_template="#/components/schemas/{model}"
    )
    input_ref = refs[(input_model, "validation")]
    async_ref = refs[(async_model, "validation")]
    max_depth = server.max_json_depth
    errors_doc: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorResponse, "description": "Unknown model_name."},
        413: {"model": ErrorResponse, "description": "Body larger than server_config.max_body_bytes."},
        503: {"model": ErrorResponse, "description": "Not ready, draining, or the queue is full (see Retry-After)."},
        504: {"model": ErrorResponse, "description": "Not answered within server_config.request_timeout_seconds."},
    }
    if authenticator is not None:
        errors_doc[401] = {"model": ErrorResponse, "description": "Missing or wrong credentials."}
    jobs_doc: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorResponse, "description": "No such job, or expired."}
    }
    if authenticator is not None:
        jobs_doc[401] = errors_doc[401]
    model_query = Query(
        description=f"The model entry to use; optional when only one is configured. Known: {', '.join(models)}."
    )

    def resolve(model_name: str | None, info: RequestInfo | None) -> str:
        name = model_name if model_name is not None else default_model
        if name is None or name not in settings.model_settings.model_entries:
            raise UnknownModelError(model_name, models)
        if info is not None:
            info.model = name
        return name

    def parse(body: bytes, parse_json: Callable[[bytes], Any]) -> Any:
        if len(body) > max_depth and _json_too_deep(body, max_depth):
            raise _InputError([{"type": "json_depth", "loc": ["body"], "msg": f"JSON nested deeper than {max_depth}"}])
        try:
            return parse_json(body)
        except ValidationError as exc:
            raise _InputError(_error_list(exc)) from None

    @app.post(
        "/predict_sync",
        response_model=output_model,
        responses={**errors_doc, 500: {"model": ErrorResponse, "description": "The pipeline failed on this input."}},
        dependencies=protected,
        openapi_extra=_body_doc(input_ref, "One input for the model."),
        summary="Predict one input",
    )
    async def predict_sync(request: Request, model_name: Annotated[str | None, model_query] = None) -> Response:
        info: RequestInfo | None = request.scope.get(REQUEST_INFO_KEY)
        name = resolve(model_name, info)
        try:
            item = parse(await request.body(), input_model.model_validate_json)
        except _InputError as exc:
            return exc.response()
        result = await runner.predict(name, item, info)
        if isinstance(result, InferenceOutputModel) and result.status != "success":
            error = result.error or "the pipeline failed on this input"
            body = json.dumps({"detail": error, "status": "error", "error": error}).encode()
            return Response(body, status_code=500, media_type=JSON)
        return Response(_dump(result), media_type=JSON)

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
        info: RequestInfo | None = request.scope.get(REQUEST_INFO_KEY)
        name = resolve(model_name, info)
        try:
            items = parse(await request.body(), batch_adapter.validate_json)
        except _InputError as exc:
            return exc.response()
        results = await runner.predict_many(name, items, info) if items else []
        return Response(b"[" + b",".join(_dump(r) for r in results) + b"]", media_type=JSON)

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
        info: RequestInfo | None = request.scope.get(REQUEST_INFO_KEY)
        name = resolve(model_name, info)
        try:
            async_request = parse(await request.body(), async_model.model_validate_json)
        except _InputError as exc:
            return exc.response()
        job_id = await runner.submit_async(name, async_request, info)
        return Response(json.dumps({"job_id": job_id}).encode(), status_code=202, media_type=JSON)

    @app.get(
        "/jobs/{job_id}",
        response_model=JobStatus[output_model],  # type: ignore[valid-type]
        responses=jobs_doc,
        dependencies=protected,
        summary="The state of an async job, with its result when done",
    )
    async def job_status(job_id: str) -> Response:
        if _JOB_ID.fullmatch(job_id) is None:
            raise JobNotFoundError("no job with this id")
        view = await runner.job_status(job_id)
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
    return app


async def _start_auth(authenticator: AuthenticatorLike) -> None:
    try:
        await authenticator.start()
    except Exception:
        logger.exception("auth failed to start; protected routes answer 503 and /ready stays not ready")


class _InputError(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid input")
        self.errors = errors

    def response(self) -> Response:
        return Response(json.dumps({"detail": self.errors}, default=str).encode(), status_code=422, media_type=JSON)


def _error_list(exc: ValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 shape: each problem with its location under ``body`` (index and field names)."""
    errors: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False):
        item: dict[str, Any] = {"type": error["type"], "loc": ["body", *error["loc"]], "msg": error["msg"]}
        if error["type"] != "json_invalid":  # the raw body, possibly large; the message says enough
            item["input"] = error.get("input")
        ctx = error.get("ctx")
        if ctx:
            item["ctx"] = {k: v if isinstance(v, str | int | float | bool | None) else str(v) for k, v in ctx.items()}
        errors.append(item)
    return errors


def _json_too_deep(body: bytes, limit: int) -> bool:
    # Counting brackets is C-speed and settles almost every body; only a body with many brackets is scanned.
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_TOKENS.finditer(body):
        char = body[match.start()]
        if char == 0x22:  # a string
            continue
        if char in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _dump(result: BaseModel) -> bytes:
    # The result's own serializer: a subclass (or an ItemError) keeps all its fields.
    return type(result).__pydantic_serializer__.to_json(result)


def _body_doc(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {JSON: {"schema": schema}},
        }
    }


def _add_error_handlers(app: FastAPI) -> None:
    async def serve_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServeError)
        headers = None
        if exc.status_code == 503:
            retry_after = exc.retry_after if isinstance(exc, QueueFullError) else 1
            headers = {"Retry-After": str(retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=headers)

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Reached only if an error escapes the ASGI layer, which already answers 500 itself.
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(Exception, internal_error)


def _version() -> str:
    return importlib.metadata.version("modalkit-serve")
