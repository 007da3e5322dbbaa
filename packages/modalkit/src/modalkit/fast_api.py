"""``from modalkit.fast_api import create_app``: the earlier modalkit's low-level app builder.

It wires two routes to functions of your own, with FastAPI dependencies for auth::

    app = create_app(
        input_model=TextInput,
        output_model=TextOutput,
        dependencies=[],               # app-wide FastAPI dependencies (None entries are skipped)
        router_dependency=check_key,   # guards both routes; None leaves them open
        sync_fn=sync_fn,               # async (model_name, SyncInputModel) -> output
        async_fn=async_fn,             # async (model_name, AsyncInputModel) -> AsyncOutputModel
    )

``POST /predict_sync?model_name=`` validates the body as ``input_model`` (a 422 names the field), wraps it in a
`SyncInputModel` and answers what ``sync_fn`` returns, shaped by ``output_model``. ``POST /predict_async``
validates the ``{message, success_queue, failure_queue, meta}`` envelope and answers ``async_fn``'s
``{job_id}`` with 200, as before. Nothing else is added: no batching, limits, metrics or job status.
For the full service over a Modal class use `modalkit.create_web_endpoints`; over your own runner,
``modalkit_serve.create_app``.
"""

# No ``from __future__ import annotations``: FastAPI reads the route functions' annotations, which name
# models only known at call time.
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from modalkit_pipeline import AsyncInputModel, AsyncOutputModel, SyncInputModel

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["T_input", "T_output", "create_app"]

T_input = TypeVar("T_input", bound=BaseModel)
T_output = TypeVar("T_output", bound=BaseModel)


def create_app(
    input_model: type[BaseModel],
    output_model: type[BaseModel],
    dependencies: Sequence[Callable[..., Any] | None],
    router_dependency: Callable[..., Any] | None,
    sync_fn: Callable[[str, BaseModel], Awaitable[Any]],
    async_fn: Callable[[str, BaseModel], Awaitable[Any]],
) -> "FastAPI":
    """A FastAPI app with ``/predict_sync`` and ``/predict_async`` calling ``sync_fn`` and ``async_fn``.

    Args:
        input_model: The request body of ``/predict_sync`` (and the ``message`` of ``/predict_async``).
        output_model: The response model of ``/predict_sync``.
        dependencies: FastAPI dependencies of the whole app; ``None`` entries are ignored.
        router_dependency: A FastAPI dependency run before both routes (auth), or ``None``.
        sync_fn: ``await sync_fn(model_name, SyncInputModel(message=...))`` answers ``/predict_sync``.
        async_fn: ``await async_fn(model_name, AsyncInputModel(...))`` answers ``/predict_async``; it must
            return an `AsyncOutputModel` (or a mapping with ``job_id``).
    """
    from fastapi import APIRouter, Depends, FastAPI

    sync_wrapper: Any = SyncInputModel[input_model]  # type: ignore[valid-type]
    async_wrapper: Any = AsyncInputModel[input_model]  # type: ignore[valid-type]

    app = FastAPI(dependencies=[Depends(dep) for dep in dependencies if dep is not None])
    router = APIRouter(dependencies=[Depends(router_dependency)] if router_dependency is not None else [])

    # The bodies are declared with the models themselves, so FastAPI validates them (a 422 names the field)
    # and the OpenAPI document shows them.
    async def predict_sync(model_name: str, request: input_model) -> Any:  # type: ignore[valid-type]
        return await sync_fn(model_name, sync_wrapper(message=request))

    async def predict_async(model_name: str, request: async_wrapper) -> Any:
        return await async_fn(model_name, request)

    router.add_api_route("/predict_sync", predict_sync, methods=["POST"], response_model=output_model)
    router.add_api_route("/predict_async", predict_async, methods=["POST"], response_model=AsyncOutputModel)
    app.include_router(router)
    return app
