"""Turn pydantic's validation errors into messages a YAML author can act on.

Pydantic reports union members as extra location segments (``gpu.str``, ``gpu.list[str]``) and phrases
limits as "Input should be greater than or equal to 1". Here each error becomes one
``(key path, message)`` pair: the location is cut back to keys that exist in the data, union members are
folded into one "expected a string or a list of strings", and limits read ``must be <= 1000 (got 5000)``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from modalkit_config._models import DEPRECATED_KEYS, KeyedValueError, Settings
from modalkit_config._paths import KeyPath

__all__ = ["Problem", "accepts_container", "accepts_string", "annotation_at", "problems_from"]

# Values under these keys are secrets: messages describe their type, never their content.
_SENSITIVE_KEYS = frozenset({"api_key"})

# Error types that mean "the value has the wrong type"; any other type means the type fit but a limit did not.
_TYPE_ERRORS = frozenset(
    {
        "string_type",
        "int_type",
        "int_parsing",
        "int_from_float",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
        "list_type",
        "tuple_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
    }
)

_TAG_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list[str]": "a list of strings",
}


@dataclass(frozen=True)
class Problem:
    """One validation problem: where in the data, and what is wrong."""

    path: KeyPath
    message: str
    """What is wrong and what was expected."""
    raw: bool = False
    """True when the message quotes the value and a raw YAML spelling would read better (see ``string_type``)."""


def problems_from(exc: ValidationError, data: Any, raw_text: Mapping[KeyPath, str]) -> list[Problem]:
    """Convert a ``ValidationError`` raised for ``data`` into problems, in pydantic's order.

    Args:
        exc: The error from validating ``data``.
        data: The data that was validated, used to tell real keys from union-member tags.
        raw_text: Key path -> the scalar as written in YAML, where known.
    """
    problems: list[Problem] = []
    unions: dict[KeyPath, list[tuple[ErrorDetails, KeyPath]]] = {}
    for error in exc.errors():
        path, tail = _split_location(error, data)
        if tail and tail[0] != "[key]":
            if path not in unions:
                unions[path] = []
                problems.append(Problem(path, ""))  # placeholder keeps the union in pydantic's order
            unions[path].append((error, tail))
            continue
        keyed = (error.get("ctx") or {}).get("error")
        if isinstance(keyed, KeyedValueError):
            problems.append(Problem((*path, *keyed.key), str(keyed)))
            continue
        message = _message(error, path, data, raw_text)
        if tail:
            message = f"the key {_show(path[-1], path)} is invalid: {message}"
        problems.append(Problem(path, message))
    return [
        Problem(p.path, _union_message(unions[p.path], p.path, data, raw_text)) if not p.message else p
        for p in problems
    ]


def _split_location(error: ErrorDetails, data: Any) -> tuple[KeyPath, KeyPath]:
    """Split pydantic's location into the keys present in ``data`` and the rest (union tags, ``[key]``)."""
    loc = error["loc"]
    node = data
    real: list[str | int] = []
    for index, segment in enumerate(loc):
        in_mapping = isinstance(node, dict) and segment in node
        in_list = isinstance(node, list | tuple) and isinstance(segment, int) and 0 <= segment < len(node)
        if in_mapping or in_list:
            node = node[segment]
        elif isinstance(node, dict) and index == len(loc) - 1 and error["type"] == "missing":
            pass
        else:
            return tuple(real), tuple(loc[index:])
        real.append(segment)
    return tuple(real), ()


def _union_message(
    errors: list[tuple[ErrorDetails, KeyPath]], path: KeyPath, data: Any, raw_text: Mapping[KeyPath, str]
) -> str:
    # A member whose type fit but whose value broke a limit says more than "expected X or Y".
    for error, _ in errors:
        if error["type"] not in _TYPE_ERRORS:
            return _message(error, path, data, raw_text)
    names: list[str] = []
    for _, tail in errors:
        name = _tag_name(str(tail[0]))
        if name not in names:
            names.append(name)
    return f"expected {' or '.join(names)} (got {_show(errors[0][0]['input'], path)})"


def _tag_name(tag: str) -> str:
    tag = tag.replace("constrained-", "")
    if tag.startswith("tuple["):
        return "a [request, limit] pair"
    return _TAG_NAMES.get(tag, tag)


def _message(error: ErrorDetails, path: KeyPath, data: Any, raw_text: Mapping[KeyPath, str]) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    got = f"(got {_show(value, path)})"
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(path)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    for bound, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than") and bound in ctx:
            return f"must be {sign} {_number(ctx[bound])} {got}"
    if kind == "string_type":
        return _expected_string(value, path, raw_text)
    if kind in ("string_too_short", "too_short"):
        minimum = ctx.get("min_length", 1)
        if minimum == 1:
            return "must not be empty"
        unit = "characters" if kind == "string_too_short" else "items"
        return f"must have at least {minimum} {unit}"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters (got {len(value)})"
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} items (got {ctx.get('actual_length')})"
    if kind == "literal_error":
        return f"expected {ctx['expected']} {got}"
    expected = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "list_type": "a list",
        "tuple_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
    }.get(kind)
    if expected is not None:
        return f"expected {expected} {got}"
    message = error["msg"]
    return f"{message[:1].lower()}{message[1:]} {got}"


def _expected_string(value: Any, path: KeyPath, raw_text: Mapping[KeyPath, str]) -> str:
    if isinstance(value, bool | int | float) and not _sensitive(path):
        kind = "a boolean" if isinstance(value, bool) else "a number"
        written = raw_text.get(path, _show(value, path))
        return f'expected a string (got {_show(value, path)}, {kind}; quote it in YAML, e.g. "{written}")'
    return f"expected a string (got {_show(value, path)})"


def _unknown_key(path: KeyPath) -> str:
    key = str(path[-1])
    message = f"unknown key {key!r}"
    model = _model_at(path[:-1])
    if model is None:
        return message
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; expected one of: {', '.join(allowed)}"


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    annotation = annotation_at(path)
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def annotation_at(path: KeyPath) -> Any:
    """The type the schema expects at ``path`` (deprecated keys follow their new name), or None if unknown."""
    annotation: Any = Settings
    for index, segment in enumerate(path):
        step = _step(annotation, segment)
        if step is _UNKNOWN and isinstance(segment, str):
            renamed = DEPRECATED_KEYS.get(tuple(str(p) for p in path[:index]), {}).get(segment)
            if renamed is not None:
                return annotation_at((*path[:index], *renamed, *path[index + 1 :]))
        if step is _UNKNOWN:
            return None
        annotation = step
    return annotation


_UNKNOWN = object()


def _step(annotation: Any, segment: str | int) -> Any:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(str(segment))
            if field is not None:
                return field.annotation
        elif get_origin(member) is dict:
            return get_args(member)[1]
        elif get_origin(member) in (list, tuple) and isinstance(segment, int):
            args = get_args(member)
            return args[0] if args else Any
    return _UNKNOWN


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a (possibly Annotated, possibly Optional) type, without None."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (types.UnionType, typing.Union):
        members: list[Any] = []
        for arg in get_args(annotation):
            members.extend(_members(arg))
        return members
    if annotation is type(None):
        return []
    return [annotation]


def accepts_string(annotation: Any) -> bool:
    """Whether ``annotation`` takes a plain string, so an environment value should stay as written."""
    return any(member is str for member in _members(annotation))


def accepts_container(annotation: Any) -> bool:
    """Whether ``annotation`` takes a list or a mapping (a section, ``list[str]``, ``dict[str, str]``, ``Any``)."""
    for member in _members(annotation):
        origin = get_origin(member) or member
        if (
            member is Any
            or origin in (list, tuple, set, frozenset, dict)
            or (isinstance(origin, type) and issubclass(origin, BaseModel | Mapping))
        ):
            return True
    return False


def _sensitive(path: KeyPath) -> bool:
    return any(segment in _SENSITIVE_KEYS for segment in path)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _show(value: Any, path: KeyPath) -> str:
    """A short rendering of a value for a message, in YAML's spelling; secrets are described, not shown."""
    if _sensitive(path):
        return f"{_kind(value)}, not shown"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
