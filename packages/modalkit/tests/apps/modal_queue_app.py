"""ModalService subclasses with an injected queue backend (new and earlier style), volumes and reloads."""

import modal
from translation_pipeline import TranslationModel  # type: ignore[import-not-found]

from modalkit import ModalConfig, ModalService
from modalkit_queue import MemoryBackend

config = ModalConfig()
app = modal.App(config.app_name)

BACKEND = MemoryBackend()


class EarlierStyleBackend:
    """A queue backend written for the earlier modalkit: ``send_message`` returning a bool."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send_message(self, queue_name: str, message: str) -> bool:
        self.sent.append((queue_name, message))
        return True


EARLIER = EarlierStyleBackend()


@app.cls(**config.get_app_cls_settings())
class QueueApp(ModalService):
    inference_implementation = TranslationModel
    modal_utils = config
    queue_backend = BACKEND
    model_name: str = modal.parameter(default="translation_model")


@app.cls(**config.get_app_cls_settings())
class EarlierQueueApp(ModalService):
    inference_implementation = TranslationModel
    modal_utils = config
    queue_backend = EARLIER
    model_name: str = modal.parameter(default="translation_model")
