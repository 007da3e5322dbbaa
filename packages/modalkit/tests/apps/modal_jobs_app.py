"""The README flow with a readable queue: async results go to an in-memory backend the tests inspect."""

import modal
from translation_pipeline import TextInput, TextOutput, TranslationModel  # type: ignore[import-not-found]

from modalkit import MemoryBackend, ModalConfig, ModalService, create_web_endpoints

config = ModalConfig()
app = modal.App(config.app_name)

BACKEND = MemoryBackend()


@app.cls(**config.get_app_cls_settings())
class JobsApp(ModalService):
    inference_implementation = TranslationModel
    modal_utils = config
    queue_backend = BACKEND
    model_name: str = modal.parameter(default="translation_model")


@app.function(**config.get_handler_settings())
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints() -> object:
    return create_web_endpoints(app_cls=JobsApp, input_model=TextInput, output_model=TextOutput)
