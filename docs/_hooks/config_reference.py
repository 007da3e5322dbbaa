"""mkdocs hook: render the modalkit.yaml reference from the JSON Schema at build time.

The page ``configuration.md`` holds the marker ``<!-- modalkit-config-reference -->``; this hook replaces it with
one table per section of the file, generated from `modalkit_config.json_schema()`; on any page it replaces
``<!-- modalkit-config-renamed-keys -->`` with the table of keys Modal 1.x renamed. Nothing in the reference is
written by hand, so it cannot drift from the models. ``tests/docs/test_config_reference.py`` checks that every
schema field appears in the rendered text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- modalkit-config-reference -->"
RENAMED_MARKER = "<!-- modalkit-config-renamed-keys -->"
PAGE = "configuration.md"

Schema = dict[str, Any]


class ReferenceError(Exception):
    """The schema holds something this renderer does not know how to show."""


def section_id(path: str) -> str:
    """The HTML id of a section's heading (a key path such as ``app_settings.batch_config``)."""
    return "cfg-" + path.replace("[]", "-items").replace(".", "-").replace("_", "-")


def _resolve(schema: Schema, defs: dict[str, Schema]) -> Schema:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.rsplit("/", 1)[-1]
    if name not in defs:
        raise ReferenceError(f"unknown $ref {ref!r}")
    return defs[name]


def _is_section(schema: Schema, defs: dict[str, Schema]) -> bool:
    """A nested model (an object with its own properties), which gets its own table."""
    return "properties" in _resolve(schema, defs)


def _branches(schema: Schema) -> list[Schema]:
    return list(schema["anyOf"]) if "anyOf" in schema else [schema]


def _limits(schema: Schema) -> list[str]:
    limits: list[str] = []
    if "minimum" in schema and "maximum" in schema:
        limits.append(f"{schema['minimum']}..{schema['maximum']}")
    elif "minimum" in schema:
        limits.append(f">= {schema['minimum']}")
    elif "maximum" in schema:
        limits.append(f"<= {schema['maximum']}")
    if "exclusiveMinimum" in schema:
        limits.append(f"> {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema:
        limits.append(f"< {schema['exclusiveMaximum']}")
    for low, high, unit in (("minLength", "maxLength", "characters"), ("minProperties", "maxProperties", "entries")):
        if low in schema and high in schema:
            limits.append(f"{schema[low]}..{schema[high]} {unit}")
        elif low in schema:
            limits.append(f"at least {schema[low]} {unit}")
        elif high in schema:
            limits.append(f"at most {schema[high]} {unit}")
    if "prefixItems" not in schema:  # a fixed-length pair already shows its length
        if schema.get("minItems") == 1 and "maxItems" not in schema:
            limits.append("not empty")
        elif "minItems" in schema or "maxItems" in schema:
            limits.append(f"{schema.get('minItems', 0)}..{schema.get('maxItems', 'any')} items")
    if "pattern" in schema:
        limits.append(f"matching `{schema['pattern']}`")
    return limits


def _type(schema: Schema, path: str, defs: dict[str, Schema]) -> str:
    """A short human type such as ``integer >= 1 or null`` or ``list of [section](#id)``."""
    if "anyOf" in schema:
        return " or ".join(_type(branch, path, defs) for branch in schema["anyOf"])
    if "$ref" in schema:
        if not _is_section(schema, defs):
            return _type(_resolve(schema, defs), path, defs)
        return f"[section](#{section_id(path)})"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type")
    if kind == "array":
        if "prefixItems" in schema:
            text = "[" + ", ".join(_type(item, path, defs) for item in schema["prefixItems"]) + "]"
        else:
            text = "list of " + _type(schema.get("items", {}), path + "[]", defs)
    elif kind == "object":
        values = schema.get("additionalProperties", True)
        text = "mapping" if values is True or values == {} else "map of string to " + _type(values, path, defs)
    elif isinstance(kind, str):
        text = kind
    elif kind is None and not schema:
        text = "any"
    else:
        raise ReferenceError(f"{path}: cannot describe the type {schema!r}")
    limits = _limits(schema)
    return f"{text} ({', '.join(limits)})" if limits else text


def _default(name: str, schema: Schema, required: list[str], defs: dict[str, Schema]) -> str:
    if name in required:
        return "**required**"
    if "default" in schema:
        return f"`{json.dumps(schema['default'])}`"
    # default_factory fields carry no default in the schema: a nested section, or an empty list or mapping.
    kinds = [_resolve(b, defs).get("type") if "$ref" in b else b.get("type") for b in _branches(schema)]
    if any(_is_section(b, defs) for b in _branches(schema)):
        return "its defaults"
    if "array" in kinds:
        return "`[]`"
    if "object" in kinds:
        return "`{}`"
    return ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def sections(schema: Schema) -> Iterator[tuple[str, Schema]]:
    """Every section of the file, depth first in file order, as (key path, object schema); the root's path is ''."""
    defs: dict[str, Schema] = schema.get("$defs", {})

    def walk(path: str, node: Schema) -> Iterator[tuple[str, Schema]]:
        yield path, node
        for name, prop in node.get("properties", {}).items():
            child = f"{path}.{name}" if path else name
            for branch in _branches(prop):
                if _is_section(branch, defs):
                    yield from walk(child, _resolve(branch, defs))
                elif branch.get("type") == "array" and _is_section(branch.get("items", {}), defs):
                    yield from walk(child + "[]", _resolve(branch["items"], defs))

    yield from walk("", schema)


def render_reference(schema: Schema) -> str:
    """The markdown of the whole reference: a heading, the section's description and a table per section."""
    defs: dict[str, Schema] = schema.get("$defs", {})
    out: list[str] = []
    for path, node in sections(schema):
        if not path:
            continue  # the root is the page itself
        depth = min(2 + path.count("."), 4)
        out.append(f"{'#' * depth} `{path}` {{ #{section_id(path)} }}")
        out.append("")
        if node.get("description"):
            out.append(_cell(node["description"]))
            out.append("")
        out.append("| key | type | default | description |")
        out.append("| --- | --- | --- | --- |")
        required = list(node.get("required", []))
        for name, prop in node.get("properties", {}).items():
            child = f"{path}.{name}"
            description = _cell(prop.get("description", ""))
            key = f"`{name}`"
            if prop.get("deprecated"):
                key += " (deprecated)"
            row = [key, _cell(_type(prop, child, defs)), _default(name, prop, required, defs), description]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


_NEW_NAME = re.compile(r"use `(?P<new>[a-z0-9_.]+)`")


def renamed_keys(schema: Schema) -> list[tuple[str, str]]:
    """(old key path, new key path) for every deprecated key, read from the schema's ``deprecated`` entries."""
    pairs: list[tuple[str, str]] = []
    for path, node in sections(schema):
        for name, prop in node.get("properties", {}).items():
            if not prop.get("deprecated"):
                continue
            found = _NEW_NAME.search(prop.get("description", ""))
            if found is None:
                raise ReferenceError(f"{path}.{name} is deprecated but its description does not say `use <new key>`")
            section = path.rsplit(".", 1)[-1]
            pairs.append((f"{section}.{name}", f"{section}.{found['new']}"))
    return pairs


def renamed_keys_table(schema: Schema) -> str:
    """A table of the renamed keys: old name, new name."""
    rows = ["| old key | new key |", "| --- | --- |"]
    rows += [f"| `{old}` | `{new}` |" for old, new in renamed_keys(schema)]
    return "\n".join(rows) + "\n"


def top_level_table(schema: Schema) -> str:
    """The root table: the two top-level keys."""
    rows = ["| key | description |", "| --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        rows.append(f"| [`{name}`](#{section_id(name)}) | {_cell(prop.get('description', ''))} |")
    return "\n".join(rows) + "\n"


def render_page_section() -> str:
    """What replaces the marker: the reference for the installed modalkit_config."""
    from modalkit_config import json_schema

    schema = json_schema()
    return top_level_table(schema) + "\n" + render_reference(schema)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs event: fill the configuration page; fail the build when its marker is missing."""
    del config, files
    if RENAMED_MARKER in markdown:
        from modalkit_config import json_schema

        markdown = markdown.replace(RENAMED_MARKER, renamed_keys_table(json_schema()))
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"docs/{PAGE} must contain {MARKER} where the generated reference goes")
    return markdown.replace(MARKER, render_page_section())
