"""``from modalkit.iomodel import ...``: the earlier modalkit's request and response models.

``T`` is the type variable the earlier generic models were declared with (a pydantic model).
"""

from typing import TypeVar

from pydantic import BaseModel

from modalkit_pipeline import (
    AsyncInputModel,
    AsyncOutputModel,
    DelayedFailureOutputModel,
    InferenceOutputModel,
    ItemError,
    SyncInputModel,
)

T = TypeVar("T", bound=BaseModel)

__all__ = [
    "AsyncInputModel",
    "AsyncOutputModel",
    "DelayedFailureOutputModel",
    "InferenceOutputModel",
    "ItemError",
    "SyncInputModel",
    "T",
]
