"""Two ModalService subclasses, each batching as its own config says (nothing read at import of modalkit)."""

import modal
from translation_pipeline import TranslationModel  # type: ignore[import-not-found]

from modalkit import ModalConfig, ModalService
from modalkit_config import settings_from_dict


def _config(prefix: str, size: int, wait: int) -> ModalConfig:
    data = {
        "app_settings": {"app_prefix": prefix, "batch_config": {"max_batch_size": size, "wait_ms": wait}},
        "model_settings": {"model_entries": {"m": {}}},
    }
    return ModalConfig(settings_from_dict(data), config_files=[])


small = _config("small", 2, 5)
large = _config("large", 64, 250)
app = modal.App("two-configs")


@app.cls(**small.get_app_cls_settings())
class Small(ModalService):
    inference_implementation = TranslationModel
    modal_utils = small
    model_name: str = modal.parameter(default="m")


@app.cls(**large.get_app_cls_settings())
class Large(ModalService):
    inference_implementation = TranslationModel
    modal_utils = large
    model_name: str = modal.parameter(default="m")
