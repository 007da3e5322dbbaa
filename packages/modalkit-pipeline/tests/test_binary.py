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


def test_accepts_names_the_media_types_a_file_field_takes_in_its_schema() -> None:
    from typing import Annotated

    from modalkit_pipeline import accepts, file_media_types

    class Upload(BaseModel):
        image: Annotated[Binary, accepts("image/png", "image/jpeg")]
        any_file: Binary
        caption: str = ""

    schema = Upload.model_json_schema()["properties"]
    assert schema["image"]["contentMediaType"] == "image/png, image/jpeg"
    assert schema["image"]["format"] == "base64"
    assert "contentMediaType" not in schema["any_file"]
    assert file_media_types(Upload) == {"image": ("image/png", "image/jpeg"), "any_file": ()}
    assert Upload(image=b"png", any_file=b"x").image == b"png"  # still plain bytes


def test_the_schema_pattern_is_exactly_padded_standard_base64() -> None:
    import re

    class In(BaseModel):
        file: Binary

    pattern = In.model_json_schema()["properties"]["file"]["pattern"]
    for n in range(6):
        assert re.fullmatch(pattern, base64.b64encode(DATA[:n]).decode())
    for bad in ("a", "abc", "ab=c", "a-b_", "abcd=", "\u00e9\u00e9\u00e9\u00e9"):
        assert not re.fullmatch(pattern, bad)
