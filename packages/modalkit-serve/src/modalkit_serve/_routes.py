"""The predict routes' logic, shared by the ASGI fast path and the FastAPI endpoints.

Each handler takes the raw body and query string and returns a `Reply` (status, JSON bytes, extra headers):
the body is parsed and validated once, straight from bytes, by pydantic-core, and the result is serialised
once, by its own model's serializer.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl

from fastapi import HTTPException
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from modalkit_config import Settings, queue_name_problem
from modalkit_pipeline import AsyncInputModel, InferenceOutputModel, ItemError, is_failure
from modalkit_serve._asgi import RequestInfo
from modalkit_serve._runner import Runner, StreamingRunner
from modalkit_serve._streams import EventStream
from modalkit_serve.errors import NotReadyError, QueueFullError, ServeError, UnknownModelError

__all__ = ["ITEM_ERROR_TYPE", "Handler", "Reply", "Routes", "StreamHandler", "error_reply", "failure_reply"]

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, bytes, Headers]
"""(status, JSON body, extra headers)."""
Handler = Callable[[bytes, bytes, "RequestInfo | None"], Awaitable[Reply]]
StreamHandler = Callable[[bytes, bytes, "RequestInfo | None"], Awaitable["Reply | EventStream"]]
"""Like `Handler`, but a stream that started answers with its `EventStream` instead of a `Reply`."""

T = TypeVar("T")
_NO_HEADERS: Headers = []
ITEM_ERROR_TYPE = "item_error"
"""The ``type`` of the 422 problem entry for an input the pipeline refused (beside pydantic's own types)."""
# Tokens of a JSON text that matter for nesting: strings (skipped whole, so brackets inside them do not count)
# and brackets.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class InputError(Exception):
    """The body is not valid input; carries FastAPI-shaped 422 problem entries."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid input")
        self.errors = errors


def error_reply(exc: Exception) -> Reply:
    """The reply for an error raised while handling a request (never a stack trace)."""
    if isinstance(exc, InputError):
        return 422, json.dumps({"detail": exc.errors}, default=str).encode(), _NO_HEADERS
    if isinstance(exc, ServeError):
        headers = _NO_HEADERS
        if exc.status_code == 503:
            retry_after = exc.retry_after if isinstance(exc, QueueFullError | NotReadyError) else 1
            if retry_after is not None:
                headers = [(b"retry-after", str(retry_after).encode())]
        return exc.status_code, json.dumps({"detail": str(exc)}).encode(), headers
    if isinstance(exc, HTTPException):
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()]
        return exc.status_code, json.dumps({"detail": exc.detail}, default=str).encode(), headers
    raise exc


MAX_REPORTED_ERRORS = 20
"""How many validation problems a 422 lists; the rest are counted in one ``more_errors`` entry."""


class Routes:
    """The predict handlers for one app.

    Args:
        runner: Runs the models.
        input_model: The body of /predict_sync and the items of /predict_batch.
        settings: Model entries and server limits.
    """

    def __init__(self, runner: Runner, input_model: type[BaseModel], settings: Settings) -> None:
        server = settings.app_settings.server_config
        self.runner = runner
        self.input_model = input_model
        self.async_model: type[BaseModel] = AsyncInputModel[input_model]  # type: ignore[valid-type]
        self.batch_adapter: TypeAdapter[list[BaseModel]] = TypeAdapter(
            Annotated[list[input_model], Field(max_length=server.max_batch_items)]  # type: ignore[valid-type,arg-type]
        )
        self.models = list(settings.model_settings.model_entries)
        self._known = frozenset(self.models)
        self._default = self.models[0] if len(self.models) == 1 else None
        self.max_depth = server.max_json_depth
        allowed = settings.app_settings.queue_config.allowed_queues
        self._allowed_queues = None if allowed is None else frozenset(allowed)
        # NaN and Infinity are not JSON, yet pydantic reads them as floats: refused unless the model says so.
        self.allow_inf_nan = input_model.model_config.get("allow_inf_nan") is True
        # One policy for unknown keys on every route: the input model's own `extra` when it sets one (pydantic's
        # rules, nested models following theirs), else refused at every level of the input.
        extra: Literal["forbid"] | None = None if "extra" in input_model.model_config else "forbid"
        self.forbids_extra = extra is not None
        """Whether unknown keys are refused at every level of the input (the OpenAPI document says so too)."""
        self._validate_input = functools.partial(input_model.model_validate_json, extra=extra)
        self._validate_async = functools.partial(self.async_model.model_validate_json, extra=extra)
        # The count is checked before any item is validated: an over-long batch costs a cheap parse, not a full
        # validation, and its 422 is one error naming the limit instead of an echo of every item.
        count_adapter: TypeAdapter[list[Any]] = TypeAdapter(
            Annotated[list[Any], Field(max_length=server.max_batch_items)]
        )
        validate_items = self.batch_adapter.validate_json
        check_count = count_adapter.validate_json

        def validate_batch(body: bytes) -> Any:
            check_count(body)
            return validate_items(body, extra=extra)

        self._validate_batch = validate_batch

    async def predict_sync(self, body: bytes, query: bytes, info: RequestInfo | None) -> Reply:
        """``POST /predict_sync``: one input, one output; a failed result as `failure_reply` answers it."""
        name = self.model_name(query, info)
        item = self.parse(body, self._validate_input)
        result = await self.runner.predict(name, item, info)
        if is_failure(result):
            return failure_reply(result)
        return 200, dump(result), _NO_HEADERS

    async def predict_batch(self, body: bytes, query: bytes, info: RequestInfo | None) -> Reply:
        """``POST /predict_batch``: a list of inputs, one result each, in order."""
        name = self.model_name(query, info)
        items = self.parse(body, self._validate_batch)
        results = await self.runner.predict_many(name, items, info) if items else []
        return 200, b"[" + b",".join([dump(r) for r in results]) + b"]", _NO_HEADERS

    async def predict_async(self, body: bytes, query: bytes, info: RequestInfo | None) -> Reply:
        """``POST /predict_async``: accept the request, answer 202 with its job id (and ``Location: /jobs/ID``)."""
        name = self.model_name(query, info)
        request = self.parse(body, self._validate_async)
        self.check_queues(request)
        job_id = await self.runner.submit_async(name, request, info)
        # A path reference (RFC 9110 allows one): the client resolves it against the URL it called.
        return 202, json.dumps({"job_id": job_id}).encode(), [(b"location", f"/jobs/{job_id}".encode())]

    async def predict_stream(self, body: bytes, query: bytes, info: RequestInfo | None) -> Reply | EventStream:
        """``POST /predict_stream``: one input, its chunks as they come.

        Waits for the first chunk, so that anything that refuses the input before it (validation, the
        pipeline's own refusal, unknown model, overload, a timeout) is an ordinary JSON error answer.
        """
        runner = self.runner
        if not isinstance(runner, StreamingRunner):
            raise ServeError("this runtime cannot stream")
        name = self.model_name(query, info)
        item = self.parse(body, self._validate_input)
        stream = runner.predict_stream(name, item, info)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            return EventStream(stream, None)
        except BaseException:
            await stream.aclose()  # refused, timed out, or the client went away while it waited
            raise
        if is_failure(first):
            await stream.aclose()
            return failure_reply(first)
        return EventStream(stream, first)

    def model_name(self, query: bytes, info: RequestInfo | None) -> str:
        """The ``model_name`` query parameter, or the only model when there is one.

        Raises:
            UnknownModelError: not a configured model (or missing while several are configured).
        """
        given = _query_value(query, "model_name") if query else None
        name = given if given is not None else self._default
        if name is None or name not in self._known:
            raise UnknownModelError(None if given is None else given[:200], self.models)
        if info is not None:
            info.model = name
        return name

    def check_queues(self, request: AsyncInputModel[Any]) -> None:
        """Refuse queue names no backend takes, and names outside ``queue_config.allowed_queues`` when set.

        Raises:
            InputError: one problem per refused queue field (the name itself is not echoed).
        """
        problems: list[dict[str, Any]] = []
        for field in ("success_queue", "failure_queue"):
            name: str = getattr(request, field)
            if not name:
                continue  # no delivery
            problem = queue_name_problem(name)
            if problem is None and self._allowed_queues is not None and name not in self._allowed_queues:
                problem = "this queue is not in app_settings.queue_config.allowed_queues"
            if problem is not None:
                problems.append({"type": "queue_name", "loc": ["body", field], "msg": problem})
        if problems:
            raise InputError(problems)

    def parse(self, body: bytes, validate: Callable[[bytes], Any]) -> Any:
        """Validate a JSON body (nesting depth first, then the schema).

        Raises:
            InputError: the problems, each with its location under ``body``.
        """
        if len(body) > self.max_depth and json_too_deep(body, self.max_depth):
            raise InputError(
                [{"type": "json_depth", "loc": ["body"], "msg": f"JSON nested deeper than {self.max_depth}"}]
            )
        # A plain search settles almost every body; only one spelling NaN or Infinity somewhere is read twice.
        if not self.allow_inf_nan and (b"NaN" in body or b"Infinity" in body):
            problems = non_finite_problems(body)
            if problems:
                raise InputError(problems)
        try:
            return validate(body)
        except ValidationError as exc:
            raise InputError(error_list(exc)) from None

    async def reply(
        self,
        handler: Callable[[bytes, bytes, RequestInfo | None], Awaitable[T]],
        body: bytes,
        query: bytes,
        info: RequestInfo | None,
    ) -> T | Reply:
        """Run a handler (a `Handler` or `StreamHandler`), turning the errors it raises into their replies."""
        try:
            return await handler(body, query, info)
        except (InputError, ServeError) as exc:
            return error_reply(exc)


def failure_reply(result: InferenceOutputModel) -> Reply:
    """The answer to a single input whose result is a failure, by where the failure lies.

    - An `ItemError` of kind ``internal`` (the pipeline raised on the input, broke its contract, or the service
      failed): 500 ``{"detail", "status": "error", "error"}``, the error being the exception's type and message
      (never a stack trace).
    - Anything else the pipeline returned as a failure (``self.item_error(...)``, or its own output with a
      status other than ``success``) is its verdict on the input: 422 in the shape of the other 422s, one problem
      at ``["body"]`` of type ``item_error`` whose ``msg`` is the pipeline's message.
    """
    if isinstance(result, ItemError) and result.kind == "internal":
        error = result.error or "the pipeline failed on this input"
        return 500, json.dumps({"detail": error, "status": "error", "error": error}).encode(), _NO_HEADERS
    problem = {"type": ITEM_ERROR_TYPE, "loc": ["body"], "msg": result.error or "the pipeline refused this input"}
    return 422, json.dumps({"detail": [problem]}).encode(), _NO_HEADERS


def _query_value(query: bytes, key: str) -> str | None:
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == key:
            return value
    return None


def dump(result: BaseModel) -> bytes:
    """JSON bytes of a result, by its own serializer (a subclass or an ItemError keeps all its fields)."""
    return type(result).__pydantic_serializer__.to_json(result)


def error_list(exc: ValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 shape: each problem with its location under ``body`` (index and field names).

    Bounded: the first `MAX_REPORTED_ERRORS` problems, then one ``more_errors`` entry with the count of the rest;
    a list the problem is about (a whole batch, for ``too_long``) is not echoed back.
    """
    errors: list[dict[str, Any]] = []
    found = exc.errors(include_url=False)
    for error in found[:MAX_REPORTED_ERRORS]:
        item: dict[str, Any] = {"type": error["type"], "loc": ["body", *error["loc"]], "msg": error["msg"]}
        # json_invalid's input is the raw body and a list's may be the whole batch: neither is echoed.
        if error["type"] != "json_invalid" and not isinstance(error.get("input"), list):
            item["input"] = error.get("input")
        ctx = error.get("ctx")
        if ctx:
            item["ctx"] = {k: v if isinstance(v, str | int | float | bool | None) else str(v) for k, v in ctx.items()}
        errors.append(item)
    if len(found) > MAX_REPORTED_ERRORS:
        rest = len(found) - MAX_REPORTED_ERRORS
        errors.append({"type": "more_errors", "loc": ["body"], "msg": f"{rest} more errors not shown", "count": rest})
    return errors


def non_finite_problems(body: bytes) -> list[dict[str, Any]]:
    """422 problem entries for each NaN, Infinity or -Infinity number in a JSON body (pydantic's ``finite_number``).

    Such text inside a string is ordinary text. A body that is not JSON gives none (validation reports it).
    """
    try:
        data = json.loads(body)
    except ValueError:
        return []
    problems: list[dict[str, Any]] = []

    def walk(value: Any, loc: list[str | int]) -> None:
        if len(problems) > MAX_REPORTED_ERRORS:
            return
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(
                {
                    "type": "finite_number",
                    "loc": ["body", *loc],
                    "msg": "Input should be a finite number (JSON has no NaN or Infinity; an input model with "
                    "allow_inf_nan=True accepts them)",
                    "input": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity"),
                }
            )
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, [*loc, i])
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, [*loc, key])

    walk(data, [])
    if len(problems) > MAX_REPORTED_ERRORS:
        problems = problems[:MAX_REPORTED_ERRORS]
        problems.append({"type": "more_errors", "loc": ["body"], "msg": "more non-finite numbers not shown"})
    return problems


def json_too_deep(body: bytes, limit: int) -> bool:
    """Whether a JSON text nests arrays/objects deeper than ``limit`` (brackets inside strings do not count)."""
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
