"""Errors and warnings raised while reading a modalkit.yaml.

Exception tree::

    ConfigError (ValueError)                 root: anything wrong with the configuration
    ├── ConfigFileNotFoundError              a named config file does not exist
    ├── ConfigSyntaxError                    a file is not valid YAML (line and column from the parser)
    └── ConfigValidationError                the merged configuration does not fit the schema

Every ``ConfigError`` carries ``issues``: a list of :class:`ConfigIssue`, one per problem found, each
saying where (file, line, dotted key path) and what was expected. ``str(error)`` lists them one per line,
in the ``file:line: key.path: message`` form editors and CI logs understand.

Warnings::

    ModalkitDeprecationWarning (FutureWarning)   a deprecated key was used; the message names the new key

``ModalkitDeprecationWarning`` subclasses ``FutureWarning`` rather than ``DeprecationWarning`` on purpose:
the people who must act on it are the authors of a YAML file, not of Python code, and Python hides
``DeprecationWarning`` outside ``__main__`` by default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ConfigFileNotFoundError",
    "ConfigIssue",
    "ConfigSyntaxError",
    "ConfigValidationError",
    "ModalkitDeprecationWarning",
]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration, with where it was found.

    Attributes:
        file: The file (or environment variable, or ``<dict>``) the offending value came from, if known.
        key_path: The dotted key path, e.g. ``app_settings.batch_config.max_batch_size`` (``""`` for the root).
        line: The 1-based line in ``file``, where known.
        message: What is wrong and what was expected.
    """

    file: str | None
    key_path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [p for p in (where, self.key_path, self.message) if p]
        return ": ".join(parts)


class ConfigError(ValueError):
    """Root of every modalkit-config error.

    Attributes:
        issues: Every problem found, in file order where known.
    """

    issues: list[ConfigIssue]

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ConfigFileNotFoundError(ConfigError):
    """A configuration file that was named (explicitly or through ``MODALKIT_CONFIG``) does not exist."""


class ConfigSyntaxError(ConfigError):
    """A configuration file is not valid YAML; the issue carries the parser's line (and column in the message)."""


class ConfigValidationError(ConfigError):
    """The configuration does not match the schema: unknown keys, wrong types, values out of range."""


class ModalkitDeprecationWarning(FutureWarning):
    """A deprecated configuration key was used; the message names the key to use instead.

    Attributes:
        issue: Where the deprecated key was found (file, line, key path), when it came from the loader;
            ``issue.message`` reads ``is deprecated; use <new key> instead``.
    """

    def __init__(self, message: str, issue: ConfigIssue | None = None) -> None:
        super().__init__(message)
        self.issue = issue
