"""``from modalkit.iomodel import ...``: the earlier modalkit's request and response models."""

from modalkit_pipeline import (
    AsyncInputModel,
    AsyncOutputModel,
    DelayedFailureOutputModel,
    InferenceOutputModel,
    ItemError,
    SyncInputModel,
)

__all__ = [
    "AsyncInputModel",
    "AsyncOutputModel",
    "DelayedFailureOutputModel",
    "InferenceOutputModel",
    "ItemError",
    "SyncInputModel",
]
