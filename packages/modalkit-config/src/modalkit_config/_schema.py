"""The JSON Schema of modalkit.yaml, generated from the models.

The package ships the same schema as ``modalkit.schema.json`` so editors and other tools can use it
without Python; a test fails when the shipped file and the models disagree. Regenerate it with
``modalkit-config schema --write``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modalkit_config._models import Settings

__all__ = ["SCHEMA_FILE", "json_schema", "render_schema"]

#: The schema shipped inside the package.
SCHEMA_FILE = Path(__file__).with_name("modalkit.schema.json")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a modalkit.yaml, with every field's description and limits."""
    schema = Settings.model_json_schema()
    schema["title"] = "modalkit.yaml"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render_schema() -> str:
    """The schema as the text written to ``modalkit.schema.json``."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
