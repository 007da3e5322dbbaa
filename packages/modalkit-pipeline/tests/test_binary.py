"""`Binary` fields: raw bytes in Python, base64 in JSON, both directions; bad base64 is a clear error."""

from __future__ import annotations

import base64

import pytest
from pydantic import BaseModel, ValidationError

from modalkit_pipeline import Binary, InferenceOutputModel

DATA = bytes(range(256)) + b"\x00\xff"


class Image(InferenceOutputModel):
    image: Binary


def test_python_code_gives_raw_bytes_and_json_carries_base64() -> None:
    out = Image(image=DATA)
    assert out.image == DATA
    dumped = out.model_dump(mode="json")
    assert dumped["image"] == base64.b64encode(DATA).decode()
    assert Image.model_validate_json(out.model_dump_json()).image == DATA
    assert out.model_dump()["image"] == DATA  # Python mode keeps bytes


def test_json_input_is_decoded_from_base64() -> None:
    class In(BaseModel):
        file: Binary

    encoded = base64.b64encode(b"hi").decode()
    assert In.model_validate_json(f'{{"file": "{encoded}"}}').file == b"hi"


def test_bad_base64_says_so_at_its_field() -> None:
    with pytest.raises(ValidationError) as info:
        Image.model_validate_json('{"image": "not base64!"}')
    [error] = info.value.errors()
    assert error["loc"] == ("image",)
    assert "not valid base64" in error["msg"]


def test_the_json_schema_is_a_base64_string() -> None:
    schema = Image.model_json_schema()["properties"]["image"]
    assert schema["type"] == "string"
    assert schema["format"] == "base64"
