"""The configuration reference is generated from modalkit_config's JSON Schema and misses no field.

The walk over the schema here is written independently of the hook's, so a field the hook's walk skips is caught.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from mkdocs.exceptions import PluginError

from modalkit_config import json_schema

ROOT = Path(__file__).resolve().parents[2]
HOOK_FILE = ROOT / "docs" / "_hooks" / "config_reference.py"

_HEADING = re.compile(r"^#+ `(?P<path>[^`]+)` \{ #(?P<id>[^ }]+) \}$")
_ROW = re.compile(r"^\| `(?P<key>[^`]+)`")


def _load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("modalkit_docs_config_reference", HOOK_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


def schema_fields(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (section path, key) of the schema with its property schema, found by following refs and unions."""
    defs = schema.get("$defs", {})
    fields: dict[tuple[str, str], dict[str, Any]] = {}

    def deref(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        return node

    def visit(path: str, node: dict[str, Any]) -> None:
        for key, prop in node.get("properties", {}).items():
            fields[(path, key)] = prop
            child = f"{path}.{key}" if path else key
            for option in prop.get("anyOf", [prop]):
                target = deref(option)
                if "properties" in target:
                    visit(child, target)
                items = deref(target.get("items", {})) if target.get("type") == "array" else {}
                if "properties" in items:
                    visit(child + "[]", items)

    visit("", schema)
    return fields


def rendered_rows(markdown: str) -> dict[tuple[str, str], str]:
    """(section path, key) -> table row, read back from the rendered markdown."""
    rows: dict[tuple[str, str], str] = {}
    section = None
    for line in markdown.splitlines():
        heading = _HEADING.match(line)
        if heading:
            section = heading["path"]
            continue
        row = _ROW.match(line)
        if row and section is not None:
            rows[(section, row["key"])] = line
    # The root table links to the two top-level sections instead of naming them in code.
    for key in re.findall(r"^\| \[`([^`]+)`\]", markdown, flags=re.MULTILINE):
        rows[("", key)] = key
    return rows


def missing_fields(schema: dict[str, Any], markdown: str) -> list[str]:
    rows = rendered_rows(markdown)
    return [f"{path or '<root>'}.{key}" for path, key in schema_fields(schema) if (path, key) not in rows]


def _squash(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def test_every_schema_field_is_in_the_rendered_reference() -> None:
    schema = json_schema()
    assert len(schema_fields(schema)) > 80  # the walk really reaches the nested sections
    assert missing_fields(schema, hook.render_page_section()) == []


def test_each_row_carries_the_fields_description_and_default() -> None:
    schema = json_schema()
    rows = rendered_rows(hook.render_page_section())
    for (path, key), prop in schema_fields(schema).items():
        if not path:
            continue
        row = rows[(path, key)]
        assert _squash(prop.get("description", "")) in row, f"{path}.{key}: description missing"
        if "default" in prop:
            assert f"`{json.dumps(prop['default'])}`" in row, f"{path}.{key}: default missing"


def test_required_and_deprecated_keys_are_marked() -> None:
    rows = rendered_rows(hook.render_page_section())
    assert "**required**" in rows[("app_settings", "app_prefix")]
    assert "**required**" in rows[("model_settings", "model_entries")]
    assert "(deprecated)" in rows[("app_settings.deployment_config", "keep_warm")]
    assert "(deprecated)" in rows[("app_settings.auth_config", "auth_header")]


def test_a_dropped_row_is_reported() -> None:
    schema = json_schema()
    markdown = "\n".join(line for line in hook.render_page_section().splitlines() if not line.startswith("| `wait_ms`"))
    assert missing_fields(schema, markdown) == ["app_settings.batch_config.wait_ms"]


def test_a_new_field_is_rendered_without_touching_the_docs() -> None:
    schema = json_schema()
    batch = schema["$defs"]["BatchConfig"]["properties"]
    batch["new_knob"] = {"type": "integer", "minimum": 2, "default": 4, "description": "A field added later."}
    markdown = hook.render_reference(schema)
    assert missing_fields(schema, hook.top_level_table(schema) + markdown) == []
    row = rendered_rows(markdown)[("app_settings.batch_config", "new_knob")]
    assert "integer (>= 2)" in row
    bounded = hook.render_reference(
        {
            "properties": {"s": {"$ref": "#/$defs/S"}},
            "$defs": {
                "S": {
                    "properties": {
                        "n": {"type": "integer", "minimum": 1, "maximum": 9},
                        "t": {"type": "string", "minLength": 1, "maxLength": 5},
                    }
                }
            },
        }
    )
    assert "integer (1..9)" in bounded
    assert "string (1..5 characters)" in bounded
    assert "`4`" in row


def test_the_configuration_page_holds_the_marker_and_the_hook_fills_it() -> None:
    text = (ROOT / "docs" / hook.PAGE).read_text(encoding="utf-8")
    assert hook.MARKER in text
    page = SimpleNamespace(file=SimpleNamespace(src_uri=hook.PAGE))
    out = hook.on_page_markdown(text, page, None, None)
    assert hook.MARKER not in out
    assert missing_fields(json_schema(), out) == []


def test_the_build_fails_when_the_marker_is_gone() -> None:
    page = SimpleNamespace(file=SimpleNamespace(src_uri=hook.PAGE))
    with pytest.raises(PluginError, match="modalkit-config-reference"):
        hook.on_page_markdown("# Configuration\n", page, None, None)


def test_other_pages_are_left_alone() -> None:
    page = SimpleNamespace(file=SimpleNamespace(src_uri="index.md"))
    assert hook.on_page_markdown(hook.MARKER, page, None, None) == hook.MARKER


def test_the_renamed_keys_table_lists_every_deprecated_key() -> None:
    schema = json_schema()
    deprecated = [(path, key) for (path, key), prop in schema_fields(schema).items() if prop.get("deprecated")]
    assert len(deprecated) == 6
    table = hook.renamed_keys_table(schema)
    for path, key in deprecated:
        assert f"| `{path.rsplit('.', 1)[-1]}.{key}` |" in table
    assert "| `deployment_config.allow_concurrent_inputs` | `deployment_config.concurrency.max_inputs` |" in table
    assert "| `auth_config.auth_header` | `auth_config.header` |" in table


def test_the_renamed_keys_marker_is_filled_on_any_page() -> None:
    page = SimpleNamespace(file=SimpleNamespace(src_uri="migrating/from-modalkit.md"))
    out = hook.on_page_markdown(f"before\n\n{hook.RENAMED_MARKER}\n", page, None, None)
    assert hook.RENAMED_MARKER not in out
    assert "| `deployment_config.keep_warm` | `deployment_config.min_containers` |" in out
