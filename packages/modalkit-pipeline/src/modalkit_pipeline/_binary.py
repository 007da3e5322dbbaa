"""Binary fields for input and output models: bytes in Python, base64 text in JSON."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema


def _from_base64(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64 (standard alphabet, padded)") from None
    return value  # bytes from Python code stay as they are; anything else fails bytes validation


def _to_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Binary = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(_to_base64, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "base64", "contentEncoding": "base64"}),
]
"""A file's bytes. Python code gives and gets raw ``bytes``; JSON carries them as standard base64 text.

Unlike pydantic's ``Base64Bytes`` (which expects base64 even from Python, so ``Out(image=png)`` fails), this
suits output models too: ``Out(image=png_bytes)`` serialises to base64 in the JSON answer.
"""
