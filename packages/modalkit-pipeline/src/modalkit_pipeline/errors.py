"""Errors raised by the pipeline contract.

The tree::

    PipelineError(Exception)
    ├── OutputCountError        a pipeline returned a different number of outputs than it got inputs
    └── StreamContractError     a streaming pipeline yielded a malformed step
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the pipeline contract raises."""


class OutputCountError(PipelineError):
    """A pipeline returned a different number of outputs than it was given inputs.

    Attributes:
        pipeline: The pipeline class name.
        expected: How many inputs the batch had.
        got: How many outputs the pipeline returned.
    """

    def __init__(self, pipeline: str, expected: int, got: int) -> None:
        self.pipeline = pipeline
        self.expected = expected
        self.got = got
        super().__init__(
            f"{pipeline}.postprocess returned {got} output{'s' if got != 1 else ''} for {expected} "
            f"input{'s' if expected != 1 else ''}; it must return exactly one output per input, in order "
            "(use self.item_error(...) for an input that cannot be processed)"
        )


class StreamContractError(PipelineError):
    """A `StreamingPipeline.predict_stream` step had the wrong number of entries or an entry of the wrong type."""
