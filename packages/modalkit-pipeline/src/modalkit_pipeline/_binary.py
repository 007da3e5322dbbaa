"""Binary fields for input and output models: bytes in Python, base64 text in JSON."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, GetJsonSchemaHandler, PlainSerializer, WithJsonSchema

BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
"""Standard padded base64, as `Binary` fields take it (in the JSON Schema, so generated clients and fuzzers know)."""


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
    WithJsonSchema({"type": "string", "format": "base64", "contentEncoding": "base64", "pattern": BASE64_PATTERN}),
]
"""A file's bytes. Python code gives and gets raw ``bytes``; JSON carries them as standard base64 text.

Unlike pydantic's ``Base64Bytes`` (which expects base64 even from Python, so ``Out(image=png)`` fails), this
suits output models too: ``Out(image=png_bytes)`` serialises to base64 in the JSON answer.
"""


class accepts:  # noqa: N801 - used as a lower-case marker inside Annotated, like pydantic's own helpers
    """Marks a file field with the media types it takes: ``Annotated[Binary, accepts("image/png", "image/jpeg")]``.

    The types go into the field's JSON Schema (``contentMediaType``); a ``multipart/form-data`` upload of
    another type is refused (415) before the pipeline sees it. ``image/*`` matches every image type.
    """

    def __init__(self, *media_types: str) -> None:
        if not media_types or not all(isinstance(t, str) and "/" in t for t in media_types):
            raise ValueError('accepts() takes media types such as "image/png" or "audio/*"')
        self.media_types = tuple(t.strip().lower() for t in media_types)

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = dict(handler(core_schema))
        schema["contentMediaType"] = ", ".join(self.media_types)
        return schema


def file_media_types(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """The file fields of an input model (`Binary` or ``Base64Bytes``) and the media types each takes (() for any)."""
    files: dict[str, tuple[str, ...]] = {}
    properties = model.model_json_schema().get("properties", {})
    for name, field in model.model_fields.items():
        schema = properties.get(field.alias or name, {})
        branches = [schema, *schema.get("anyOf", ())]
        if not any(b.get("format") == "base64" or b.get("contentEncoding") == "base64" for b in branches):
            continue
        declared = next((b["contentMediaType"] for b in branches if "contentMediaType" in b), "")
        files[name] = tuple(t.strip() for t in declared.split(",") if t.strip())
    return files
