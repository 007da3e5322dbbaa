"""The earlier modalkit README flow, as written (import paths included)."""

import modal
from translation_pipeline import TextInput, TextOutput, TranslationModel  # type: ignore[import-not-found]

from modalkit.modal_config import ModalConfig
from modalkit.modal_service import ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)


@app.cls(**config.get_app_cls_settings())
class TranslationApp(ModalService):
    inference_implementation = TranslationModel
    model_name: str = modal.parameter(default="translation_model")
    modal_utils = config


@app.function(**config.get_handler_settings())
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]  # as the earlier README wrote it
    return create_web_endpoints(app_cls=TranslationApp, input_model=TextInput, output_model=TextOutput)
