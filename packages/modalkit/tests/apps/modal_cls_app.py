"""The one-decorator form: ``@config.cls(app)`` is ``@app.cls(...)`` plus ``@modal.concurrent`` when configured."""

import modal
from translation_pipeline import TextInput, TextOutput, TranslationModel  # type: ignore[import-not-found]

from modalkit import ModalConfig, ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)


@config.cls(app)
class TranslationApp(ModalService):
    inference_implementation = TranslationModel
    model_name: str = modal.parameter(default="translation_model")
    modal_utils = config


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]
    return create_web_endpoints(app_cls=TranslationApp, input_model=TextInput, output_model=TextOutput)
