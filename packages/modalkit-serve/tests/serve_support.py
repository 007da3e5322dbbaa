"""A toy pipeline whose behaviour is steered by the input text, and small helpers for the serve tests.

Texts with a meaning:

- ``raise``: predict raises ``ValueError`` for the whole batch containing it.
- ``item-error``: postprocess returns ``self.item_error(...)`` for that item only.
- ``cuda``: predict raises a ``RuntimeError`` whose text says ``CUDA error``.
- ``accel``: predict raises an exception class named ``AcceleratorError`` (torch's CUDA error class name).
- ``count``: postprocess returns one output too few.
- ``block``: predict waits until ``pipeline.gate`` is set (tests clear it to hold the model busy).
- ``dict``: postprocess returns a plain dict instead of a model for that item.
- ``status-error``: postprocess returns the output model with ``status="error"`` (the earlier modalkit's way).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from modalkit_config import Settings
from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError

LOAD_GATE = threading.Event()
"""Model entries with ``slow_load: true`` wait for this in their constructor."""


class ToyInput(BaseModel):
    """One text."""

    text: str = Field(min_length=1, max_length=100)


class ToyOutput(InferenceOutputModel):
    """The text upper-cased, and its length."""

    upper: str
    length: int


class AcceleratorError(RuntimeError):
    """Same class name as torch's CUDA error class (torch.AcceleratorError)."""


class ToyPipeline(InferencePipeline[ToyInput, ToyOutput]):
    """Upper-cases texts; records every batch it ran."""

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        if kwargs.get("fail_load"):
            raise RuntimeError(f"cannot load {model_name}: weights missing")
        if kwargs.get("slow_load"):
            LOAD_GATE.wait(30)
        self.batches: list[list[str]] = []
        self.reloads = 0
        self.fail_reload = False
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def preprocess(self, input_list: list[ToyInput]) -> dict[str, Any]:
        return {"texts": [i.text for i in input_list]}

    def predict(self, input_list: list[ToyInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        texts: list[str] = preprocessed_data["texts"]
        self.batches.append(list(texts))
        self.started.set()
        if "block" in texts:
            self.gate.wait(30)
        if "raise" in texts:
            raise ValueError("cannot handle 'raise'")
        if "cuda" in texts:
            raise RuntimeError("CUDA error: device-side assert triggered")
        if "accel" in texts:
            raise AcceleratorError("device lost")
        return {"upper": [t.upper() for t in texts]}

    def postprocess(self, input_list: list[ToyInput], raw_output: dict[str, Any]) -> list[ToyOutput | ItemError]:
        out: list[Any] = []
        for i, (item, up) in enumerate(zip(input_list, raw_output["upper"], strict=True)):
            if item.text == "item-error":
                out.append(self.item_error("this item is not allowed", index=i))
            elif item.text == "dict":
                out.append({"upper": up})
            elif item.text == "status-error":
                out.append(ToyOutput(status="error", error="no upper case for this", upper="", length=0))
            else:
                out.append(ToyOutput(upper=up, length=len(item.text)))
        if any(i.text == "count" for i in input_list):
            out.pop()
        return out

    def on_volume_reload(self) -> None:
        if self.fail_reload:
            raise OSError("volume is gone")
        self.reloads += 1


def toy_settings(**server: Any) -> Settings:
    """Settings with one toy model entry, batching on, and the given server_config overrides."""
    return settings_with(models={"toy": {}}, server=server)


def settings_with(
    *, models: dict[str, dict[str, Any]], server: dict[str, Any] | None = None, batch: dict[str, Any] | None = None
) -> Settings:
    """Settings for tests: the given model entries, server_config and batch_config."""
    return Settings.model_validate(
        {
            "app_settings": {
                "app_prefix": "toy",
                "batch_config": batch or {"max_batch_size": 8, "wait_ms": 10},
                "server_config": server or {},
            },
            "model_settings": {"model_entries": models},
        }
    )


def new_pipeline() -> ToyPipeline:
    """A toy pipeline built as the server builds one."""
    return ToyPipeline("toy", ".", {})


def statuses(results: Sequence[BaseModel]) -> list[str]:
    """The ``status`` of each result (outputs and `ItemError` both have one)."""
    return [str(getattr(r, "status", "?")) for r in results]
