"""A model that misbehaves on purpose: ``modalkit serve tests/reliability/apps/faulty/app.py``.

What it does with each text:

- contains ``boom``: the whole batch raises ``ValueError`` (the worker must isolate that item; the others succeed);
- contains ``hang``: the batch sleeps ``hang_seconds`` (past ``request_timeout_seconds``, so callers get 504);
- anything else: answers the text's length.

Every batch also sleeps ``batch_sleep_ms`` (0 by default), like a small accelerator: a slow model lets requests
pile up in the queue, which is what the outbox, shutdown and timeout tests need.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_serve import ServiceSpec


class FaultInput(BaseModel):
    """One text."""

    text: str = Field(min_length=1, max_length=1000)
    """The text; ``boom`` in it makes the model raise, ``hang`` makes it stall."""


class FaultOutput(InferenceOutputModel):
    """The text's length."""

    length: int
    """Characters in the text."""


class FaultyPipeline(InferencePipeline[FaultInput, FaultOutput]):
    """Raises on ``boom``, stalls on ``hang``, else counts characters.

    Model entry settings:
        hang_seconds: How long a batch holding ``hang`` stalls.
        batch_sleep_ms: Time every batch takes, on top of the work.
    """

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        self.hang_seconds = float(kwargs.get("hang_seconds", 2.0))
        self.batch_sleep = float(kwargs.get("batch_sleep_ms", 0.0)) / 1000.0

    def preprocess(self, input_list: list[FaultInput]) -> dict[str, Any]:
        return {"texts": [item.text for item in input_list]}

    def predict(self, input_list: list[FaultInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        texts: list[str] = preprocessed_data["texts"]
        if self.batch_sleep:
            time.sleep(self.batch_sleep)
        if any("boom" in text for text in texts):
            raise ValueError("boom: this model refuses texts that say boom")
        if any("hang" in text for text in texts):
            time.sleep(self.hang_seconds)
        return {"lengths": [len(text) for text in texts]}

    def postprocess(self, input_list: list[FaultInput], raw_output: dict[str, Any]) -> list[FaultOutput | ItemError]:
        return [FaultOutput(length=n) for n in raw_output["lengths"]]


# Settings: the modalkit.yaml next to this file, or the files named by --config / MODALKIT_CONFIG.
service = ServiceSpec(FaultyPipeline)
