"""An app file that uses every ModalConfig helper on plain Modal objects (no ModalService)."""

# No `from __future__ import annotations`: modal reads modal.parameter types from the raw annotations.

from typing import Any

import modal

from modalkit import ModalConfig

config = ModalConfig()
app = modal.App(config.app_name)


@app.cls(**config.get_app_cls_settings())
@config.concurrent()
class Inference:
    model_name: str = modal.parameter(default="m")

    @modal.batched(**config.get_batched_method_settings())
    def process_request(self, items: list[int]) -> list[int]:
        return items


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints() -> Any:
    return None
