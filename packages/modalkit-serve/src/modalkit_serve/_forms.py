"""``multipart/form-data`` uploads: read with a per-file limit, then turned into the JSON body of the same input.

A form is read as it arrives (python-multipart's streaming parser), so a file over ``server_config.max_file_bytes``
is refused with 413 as soon as it crosses the limit, not after the whole body was read. Each file part fills the
input model's file field of the same name (`modalkit_pipeline.Binary` or ``Base64Bytes``: it becomes base64 text,
which those fields decode); every other part is a field's value (JSON text for a non-string field, so ``3``,
``true`` and ``["a", "b"]`` work). The result is validated by the same code as a JSON body, so both reach the
pipeline as the same typed input, with the same 422s.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException
from pydantic import BaseModel
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from modalkit_pipeline import file_media_types

__all__ = ["FormReader", "form_openapi", "is_form_content_type"]

MAX_PARTS = 64
"""The most parts one form may have."""


def is_form_content_type(value: bytes | None) -> bool:
    """Whether a Content-Type is ``multipart/form-data``."""
    return value is not None and value.split(b";", 1)[0].strip().lower() == b"multipart/form-data"


class _Part:
    __slots__ = ("content_type", "data", "filename", "name", "size")

    def __init__(self) -> None:
        self.name: str | None = None
        self.filename: str | None = None
        self.content_type = "application/octet-stream"
        self.data: list[bytes] = []
        self.size = 0


class FormReader:
    """Reads uploads for one input model.

    Args:
        input_model: The pipeline's input model; its `Binary`/``Base64Bytes`` fields are the file fields.
        max_file_bytes: The most bytes one part (file or field) may have.
    """

    def __init__(self, input_model: type[BaseModel], max_file_bytes: int) -> None:
        self.files = file_media_types(input_model)
        self.max_file_bytes = max_file_bytes
        properties = input_model.model_json_schema().get("properties", {})
        self._text_fields = {name for name, schema in properties.items() if schema.get("type") == "string"}

    async def body(
        self, chunks: AsyncIterator[bytes], content_type: bytes, origin: str | None, host: str | None
    ) -> bytes:
        """The JSON body that the form stands for.

        Raises:
            HTTPException: 403 for a form posted from another site, 400 for a malformed form, 413 for a part over
                the limit, 415 for a file of a media type its field does not take.
        """
        if origin is not None and origin != "null" and urlsplit(origin).netloc.lower() != (host or "").lower():
            # A web page on another site may post a form here without asking (no CORS preflight for forms).
            raise HTTPException(
                403, "a form posted from another site is refused; send JSON, or post from this server's own pages"
            )
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise HTTPException(400, "multipart/form-data needs a boundary parameter in its Content-Type")
        parts = await self._read(chunks, boundary)
        return json.dumps(self._values(parts)).encode()

    async def _read(self, chunks: AsyncIterator[bytes], boundary: bytes) -> list[_Part]:
        parts: list[_Part] = []
        header_name = bytearray()
        header_value = bytearray()
        limit = self.max_file_bytes

        def on_part_begin() -> None:
            if len(parts) >= MAX_PARTS:
                raise HTTPException(413, f"a form may have at most {MAX_PARTS} parts")
            parts.append(_Part())

        def on_part_data(data: bytes, start: int, end: int) -> None:
            part = parts[-1]
            part.size += end - start
            if part.size > limit:
                raise HTTPException(
                    413, f"the file in field {part.name!r} is larger than {limit} bytes (server_config.max_file_bytes)"
                )
            part.data.append(data[start:end])

        def on_header_field(data: bytes, start: int, end: int) -> None:
            header_name.extend(data[start:end])

        def on_header_value(data: bytes, start: int, end: int) -> None:
            header_value.extend(data[start:end])

        def on_header_end() -> None:
            name = bytes(header_name).lower()
            part = parts[-1]
            if name == b"content-disposition":
                _, options = parse_options_header(bytes(header_value))
                name_value = options.get(b"name")
                part.name = None if name_value is None else name_value.decode("utf-8", "replace")
                filename = options.get(b"filename")
                part.filename = None if filename is None else filename.decode("utf-8", "replace")
            elif name == b"content-type":
                part.content_type = bytes(header_value).split(b";", 1)[0].strip().lower().decode("latin-1")
            header_name.clear()
            header_value.clear()

        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": on_part_begin,
                "on_part_data": on_part_data,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
            },
        )
        try:
            async for chunk in chunks:
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise HTTPException(400, f"malformed multipart/form-data body: {exc}") from None
        return parts

    def _values(self, parts: list[_Part]) -> dict[str, Any]:
        values: dict[str, list[Any]] = {}
        for part in parts:
            if part.name is None:
                raise HTTPException(400, "a form part has no name (Content-Disposition: form-data; name=...)")
            data = b"".join(part.data)
            if part.name in self.files:
                self._check_type(part.name, part.content_type)
                value: Any = base64.b64encode(data).decode("ascii")
            else:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise HTTPException(400, f"form field {part.name!r} is not UTF-8 text") from None
                value = text if part.name in self._text_fields else _json_or_text(text)
            values.setdefault(part.name, []).append(value)
        return {name: found[0] if len(found) == 1 else found for name, found in values.items()}

    def _check_type(self, name: str, content_type: str) -> None:
        accepted = self.files[name]
        if not accepted or any(_matches(content_type, t) for t in accepted):
            return
        raise HTTPException(415, f"field {name!r} takes {', '.join(accepted)}; the file sent is {content_type}")


def _matches(media_type: str, accepted: str) -> bool:
    if accepted.endswith("/*"):
        return media_type.startswith(accepted[:-1])
    return media_type == accepted


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def form_openapi(input_model: type[BaseModel], schema: dict[str, Any]) -> dict[str, Any]:
    """The ``multipart/form-data`` media type of a request body: file fields as binary, so Swagger shows a picker.

    Args:
        input_model: The input model.
        schema: Its JSON Schema (validation mode, ``$ref`` into the document's components).
    """
    files = file_media_types(input_model)
    properties: dict[str, Any] = {}
    encoding: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if name in files:
            properties[name] = {"type": "string", "format": "binary", "title": prop.get("title", name)}
            if files[name]:
                encoding[name] = {"contentType": ", ".join(files[name])}
        else:
            properties[name] = prop
            if prop.get("type") != "string":
                encoding[name] = {"contentType": "application/json"}
    form: dict[str, Any] = {"type": "object", "properties": properties}
    if "additionalProperties" in schema:
        form["additionalProperties"] = schema["additionalProperties"]
    if schema.get("required"):
        form["required"] = list(schema["required"])
    return {"schema": form, "encoding": encoding}
