"""YAML reading that remembers where every key was written.

PyYAML's safe loader gives data without positions. We compose the node tree ourselves, build the data
from it, and walk the nodes once to record the line of every mapping key and sequence item (and the raw
text of scalars, so a message can quote ``3.10`` as written rather than as the float ``3.1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from modalkit_config._paths import KeyPath, format_key_path
from modalkit_config.errors import ConfigIssue, ConfigSyntaxError

__all__ = ["YamlDocument", "read_yaml"]

# libyaml's parser is several times faster and keeps the same node marks; PyYAML builds without it fall back.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class YamlDocument:
    """A parsed YAML document.

    Attributes:
        data: The document as Python data (``None`` for an empty document).
        lines: Key path -> 1-based line where that key (or sequence item) was written.
        raw: Key path -> the scalar's text as written, for scalar values.
        root_line: Line where the document's content starts, if it has any.
    """

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    raw: dict[KeyPath, str] = field(default_factory=dict)
    root_line: int | None = None


def read_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document with positions.

    Args:
        text: The document.
        file: Name used in error messages.

    Raises:
        ConfigSyntaxError: The text is not valid YAML, holds several documents, or repeats a key.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(data=None)
        data = loader.construct_document(node)
        document = YamlDocument(data=data, root_line=node.start_mark.line + 1)
        duplicates: list[ConfigIssue] = []
        _walk(loader, node, (), document, duplicates, file)
    except yaml.MarkedYAMLError as exc:
        raise ConfigSyntaxError([_syntax_issue(exc, file)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for parse problems
        raise ConfigSyntaxError([ConfigIssue(file, "", None, f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if duplicates:
        raise ConfigSyntaxError(duplicates)
    return document


def _syntax_issue(exc: yaml.MarkedYAMLError, file: str) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "cannot parse"
    message = f"invalid YAML: {problem}"
    if mark is not None:
        message += f" (column {mark.column + 1})"
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        message += f", {exc.context} on line {exc.context_mark.line + 1}"
    return ConfigIssue(file, "", mark.line + 1 if mark is not None else None, message)


def _walk(
    loader: yaml.SafeLoader,
    node: Node,
    path: KeyPath,
    document: YamlDocument,
    duplicates: list[ConfigIssue],
    file: str,
) -> None:
    if isinstance(node, MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                continue  # complex keys cannot appear in a valid config; validation reports them
            key = loader.construct_object(key_node)
            if not isinstance(key, str | int):
                key = str(key)
            line = key_node.start_mark.line + 1
            # Keys pulled in through a `<<` merge come from an anchor written earlier; overriding them is
            # the point of a merge, so only keys written inside this mapping count as duplicates.
            if key_node.start_mark.index >= node.start_mark.index:
                if key in first_line:
                    duplicates.append(
                        ConfigIssue(
                            file,
                            format_key_path((*path, key)),
                            line,
                            f"duplicate key (first given on line {first_line[key]})",
                        )
                    )
                first_line.setdefault(key, line)
            document.lines[(*path, key)] = line
            _walk(loader, value_node, (*path, key), document, duplicates, file)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            document.lines[(*path, index)] = item.start_mark.line + 1
            _walk(loader, item, (*path, index), document, duplicates, file)
    elif isinstance(node, ScalarNode) and path:
        document.raw[path] = node.value
