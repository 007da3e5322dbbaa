"""ModalService subclasses with an injected queue backend (new and earlier style), volumes and reloads."""

import asyncio
from collections.abc import Sequence

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


class SlowBackend(MemoryBackend):
    """A queue that takes a while to acknowledge each send (a remote queue, a busy broker)."""

    seconds = 0.3

    async def send(self, queue_name: str, message: str) -> None:
        await asyncio.sleep(self.seconds)
        await super().send(queue_name, message)

    async def send_batch(self, queue_name: str, messages: Sequence[str]) -> None:
        await asyncio.sleep(self.seconds)
        await super().send_batch(queue_name, messages)


SLOW = SlowBackend()


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


@app.cls(**config.get_app_cls_settings())
class SlowQueueApp(ModalService):
    inference_implementation = TranslationModel
    modal_utils = config
    queue_backend = SLOW
    model_name: str = modal.parameter(default="translation_model")
