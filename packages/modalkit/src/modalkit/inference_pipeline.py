"""``from modalkit.inference_pipeline import InferencePipeline``: the earlier modalkit's import path."""

from modalkit_pipeline import InferencePipeline, ItemError, failed_indices

__all__ = ["InferencePipeline", "ItemError", "failed_indices"]
