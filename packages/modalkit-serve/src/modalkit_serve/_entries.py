"""Model entries checked against the arguments their pipeline declares, before any model is built."""

from __future__ import annotations

from typing import Any

from modalkit_config import ConfigValidationError, Settings
from modalkit_pipeline import InferencePipeline

__all__ = ["check_model_entries"]


def check_model_entries(pipeline_cls: type[InferencePipeline[Any, Any]], settings: Settings) -> None:
    """Refuse model entries the pipeline's declared arguments do not fit (see `InferencePipeline.entry_problems`).

    Raises:
        ConfigValidationError: every problem, each at the file and line of the entry key that holds it.
    """
    issues = [
        settings.issue_at(("model_settings", "model_entries", name, *path), message)
        for name, entry in settings.model_settings.model_entries.items()
        for path, message in pipeline_cls.entry_problems(entry)
    ]
    if issues:
        raise ConfigValidationError(issues)
