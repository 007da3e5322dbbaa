"""The earlier modalkit's README, steps 1 and 2, in one file: the model, then the Modal app.

    TRANSLATION_API_KEY=dev-key uv run modalkit serve examples/upstream_style/app.py   # this machine
    uv run modalkit deploy examples/upstream_style/app.py                            # Modal (or: modal deploy)

Only the annotations were modernised, so that ``mypy --strict`` passes: ``list[...]``,
``InferencePipeline[TextInput, TextOutput]``, ``ItemError`` in postprocess's return type, and ``modal_utils``
without its annotation (``modal_utils: ModalConfig = ...`` still runs). The imports, the classes, their
attributes and the web endpoint are as the earlier README wrote them, plus ``@modal_config.handler_concurrent()``
on the web function (Modal 1.x takes input concurrency only as a decorator).
"""

# No `from __future__ import annotations` here: Modal reads the modal.parameter types from the annotations.
from typing import Any

import modal
from pydantic import BaseModel

from modalkit.inference_pipeline import InferencePipeline
from modalkit.iomodel import ItemError
from modalkit.modal_config import ModalConfig
from modalkit.modal_service import ModalService, create_web_endpoints

# --- 1. Define your model ---------------------------------------------------------------------------------


class TextInput(BaseModel):
    text: str
    language: str = "en"


class TextOutput(BaseModel):
    translated_text: str
    confidence: float


class TranslationModel(InferencePipeline[TextInput, TextOutput]):
    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings)
        # Load your model here, e.g. from all_model_data_folder; this one needs nothing.

    def preprocess(self, input_list: list[TextInput]) -> dict[str, Any]:
        """Prepare inputs for the model"""
        texts = [item.text for item in input_list]
        return {"texts": texts, "languages": [item.language for item in input_list]}

    def predict(self, input_list: list[TextInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        """Run model inference"""
        translations = [text.upper() for text in preprocessed_data["texts"]]  # Example
        return {"translations": translations, "scores": [0.95] * len(translations)}

    def postprocess(self, input_list: list[TextInput], raw_output: dict[str, Any]) -> list[TextOutput | ItemError]:
        """Format model outputs"""
        return [
            TextOutput(translated_text=text, confidence=score)
            for text, score in zip(raw_output["translations"], raw_output["scores"], strict=True)
        ]


# --- 2. Create your Modal app -----------------------------------------------------------------------------

# Initialize with your config
modal_config = ModalConfig()
app = modal.App(name=modal_config.app_name)


# Define your Modal app class
@app.cls(**modal_config.get_app_cls_settings())
class TranslationApp(ModalService):
    inference_implementation = TranslationModel
    model_name: str = modal.parameter(default="translation_model")
    modal_utils = modal_config


# Create API endpoints. handler_concurrent() is the one line Modal 1.x adds to the earlier README: Modal took
# away the `allow_concurrent_inputs` argument, so input concurrency is a decorator (without it the web function
# would take one request at a time).
@app.function(**modal_config.get_handler_settings())
@modal_config.handler_concurrent()
@modal.asgi_app(**modal_config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]  # as the earlier README wrote it
    return create_web_endpoints(app_cls=TranslationApp, input_model=TextInput, output_model=TextOutput)
