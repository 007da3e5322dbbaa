"""A small real pipeline for the tests: word-by-word English -> French from a dictionary."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from modalkit.inference_pipeline import InferencePipeline
from modalkit.iomodel import InferenceOutputModel, ItemError

WORDS = {"hello": "bonjour", "world": "monde", "cat": "chat", "good": "bon", "night": "nuit"}


class TextInput(BaseModel):
    text: str


class TextOutput(InferenceOutputModel):
    translation: str


class TranslationModel(InferencePipeline[TextInput, TextOutput]):
    """Translates known words, keeps unknown ones. ``boom`` raises (its item fails); a blank text is refused with
    ``self.item_error``; ``gpu melt`` is a CUDA error."""

    def __init__(self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], **kwargs: Any):
        super().__init__(model_name, all_model_data_folder, common_settings, **kwargs)
        self.words = dict(WORDS)
        self.words.update(kwargs.get("extra_words", {}))
        self.reloads = 0

    def preprocess(self, input_list: list[TextInput]) -> dict[str, Any]:
        return {"tokens": [item.text.lower().split() for item in input_list]}

    def predict(self, input_list: list[TextInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        if any(item.text == "gpu melt" for item in input_list):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if any(item.text == "boom" for item in input_list):
            raise ValueError("boom is not a word")
        return {"out": [" ".join(self.words.get(t, t) for t in tokens) for tokens in preprocessed_data["tokens"]]}

    def postprocess(self, input_list: list[TextInput], raw_output: dict[str, Any]) -> list[TextOutput | ItemError]:
        return [
            TextOutput(translation=text) if item.text.strip() else self.item_error("nothing to translate")
            for item, text in zip(input_list, raw_output["out"], strict=True)
        ]

    def on_volume_reload(self) -> None:
        self.reloads += 1
