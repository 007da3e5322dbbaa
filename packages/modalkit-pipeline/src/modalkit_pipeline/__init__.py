"""modalkit-pipeline: the contract between a model and modalkit. Depends on pydantic only.

Write a subclass of `InferencePipeline[InputModel, OutputModel]`; modalkit serves it. Use
`modalkit_pipeline.testing.run_pipeline` to test it without a server.
"""

from importlib.metadata import version as _version

from modalkit_pipeline._binary import Binary, accepts, file_media_types
from modalkit_pipeline._iomodels import (
    AsyncInputModel,
    AsyncOutputModel,
    DelayedFailureOutputModel,
    InferenceOutputModel,
    ItemError,
    SyncInputModel,
)
from modalkit_pipeline._pipeline import InferencePipeline, failed_indices, is_failure
from modalkit_pipeline._streaming import StreamEvent, StreamingPipeline, StreamStep
from modalkit_pipeline.errors import OutputCountError, PipelineError, StreamContractError

__version__ = _version("modalkit-pipeline")

__all__ = [
    "AsyncInputModel",
    "AsyncOutputModel",
    "Binary",
    "DelayedFailureOutputModel",
    "InferenceOutputModel",
    "InferencePipeline",
    "ItemError",
    "OutputCountError",
    "PipelineError",
    "StreamContractError",
    "StreamEvent",
    "StreamStep",
    "StreamingPipeline",
    "SyncInputModel",
    "__version__",
    "accepts",
    "errors",
    "failed_indices",
    "file_media_types",
    "is_failure",
]
