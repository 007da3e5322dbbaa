"""The request and response models, with the earlier modalkit's names and fields."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T", bound=BaseModel)


class SyncInputModel(BaseModel, Generic[T]):
    """A synchronous request: the user's input model, wrapped."""

    model_config = ConfigDict(extra="forbid")

    message: T
    """The input for the model."""


class AsyncInputModel(BaseModel, Generic[T]):
    """An asynchronous request: the input plus where to deliver its result."""

    model_config = ConfigDict(extra="forbid")

    message: T
    """The input for the model."""
    success_queue: str = ""
    """Queue that receives the result when the item succeeds (empty: don't deliver)."""
    failure_queue: str = ""
    """Queue that receives the error when the item fails (empty: don't deliver)."""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Free-form metadata, passed back with the result."""


class AsyncOutputModel(BaseModel):
    """The answer to an asynchronous request."""

    job_id: str
    """Identifier of the accepted job; poll `GET /jobs/{job_id}` or wait for the queue."""


def _is_empty(value: Any) -> bool:
    return not value


class InferenceOutputModel(BaseModel):
    """Base of every pipeline output. Extra keys are allowed so pipelines can add their own fields."""

    model_config = ConfigDict(extra="allow")

    status: str = "success"
    """`success` or `error`."""
    error: str | None = None
    """What went wrong, when `status` is `error`."""
    meta: dict[str, Any] = Field(default_factory=dict, exclude_if=_is_empty)
    """The `meta` of the async request this output answers (set when it is delivered; empty otherwise, and then
    left out of the output's JSON)."""


class ItemError(InferenceOutputModel):
    """The result for one input that could not be processed; the rest of its batch is unaffected.

    Return it from `postprocess` in place of that input's output (see `InferencePipeline.item_error`).
    The serving layer makes them too, marked ``kind="internal"``, for inputs the pipeline raised on.
    """

    status: Literal["error"] = "error"
    error: str
    """What went wrong with this input; shown to the caller, so it must not contain secrets."""
    index: int | None = None
    """Position of the input in its batch, when the pipeline knows it."""
    kind: Literal["input", "internal"] = "input"
    """Where the failure lies. ``input``: the pipeline returned this error on purpose because the input cannot be
    processed (the caller's problem; ``/predict_sync`` answers 422). ``internal``: the serving layer made it because
    the pipeline raised, broke its contract, or the service failed (the server's problem; ``/predict_sync``
    answers 500). Errors without a kind (from an earlier version) read as ``input``."""


class DelayedFailureOutputModel(InferenceOutputModel):
    """What an async job's failure queue receives when its batch failed as a whole."""

    original_message: AsyncInputModel[Any]
    """The request that failed, so the consumer can retry or inspect it."""
