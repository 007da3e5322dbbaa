"""The JSON Schema: generated from the models, shipped in the package, never stale."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from modalkit_config import json_schema


def _shipped() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((files("modalkit_config") / "modalkit.schema.json").read_text())
    return data


def test_shipped_schema_matches_the_models() -> None:
    # On failure regenerate it: uv run --frozen python -m modalkit_config.cli schema --write
    assert _shipped() == json_schema()


def test_schema_carries_field_descriptions_and_limits() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "modalkit.yaml"
    assert schema["required"] == ["app_settings", "model_settings"]
    batch = schema["$defs"]["BatchConfig"]["properties"]["max_batch_size"]
    assert batch["maximum"] == 1000
    assert batch["minimum"] == 1
    assert batch["description"].startswith("Most inputs combined into one batch")
    assert schema["$defs"]["DeploymentConfig"]["additionalProperties"] is False


def test_deprecated_keys_are_in_the_schema_marked_deprecated() -> None:
    deployment = json_schema()["$defs"]["DeploymentConfig"]["properties"]
    assert deployment["concurrency_limit"]["deprecated"] is True
    assert "max_containers" in deployment["concurrency_limit"]["description"]
    auth = json_schema()["$defs"]["AuthConfig"]["properties"]
    assert auth["auth_header"]["deprecated"] is True


def test_every_field_has_a_description() -> None:
    missing = [
        f"{name}.{field}"
        for name, definition in json_schema()["$defs"].items()
        for field, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert missing == []
