"""Streaming on Modal: the batched class for sync/batch/async, a concurrent class whose generator method streams."""

import modal
from stream_pipeline import Completion, Prompt, Token, TokenStream  # type: ignore[import-not-found]

from modalkit import ModalConfig, ModalService, ModalStreamService, create_web_endpoints

__all__ = ["Completion", "Prompt", "Token", "TokenStream", "TokenStreams", "Tokens", "web_endpoints"]

config = ModalConfig()
app = modal.App(config.app_name)


@config.cls(app)
class Tokens(ModalService):
    inference_implementation = TokenStream
    model_name: str = modal.parameter(default="tokens")
    modal_utils = config


@config.stream_cls(app)
class TokenStreams(ModalStreamService):
    inference_implementation = TokenStream
    model_name: str = modal.parameter(default="tokens")
    modal_utils = config


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # type: ignore[no-untyped-def]
    return create_web_endpoints(Tokens, Prompt, Completion, stream_cls=TokenStreams)
