"""Loading settings: the public entry points, the YAML files, and where each value came from.

`load_settings` and `settings_from_dict` build a `Settings`, a pydantic-settings ``BaseSettings``: pydantic-settings
reads the environment, ``.env`` and a secrets directory, merges the sources and validates. This module adds what
it lacks: the YAML files and overlays (each key's file and line kept, relative paths resolved against the file),
deprecated keys renamed with a warning, and pydantic's errors turned into ``file:line: key.path: message``, every
problem at the source whose value won.
"""

from __future__ import annotations

import contextvars
import copy
import os
import sys
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from modalkit_config._messages import problems_from
from modalkit_config._models import DEPRECATED_KEYS, rename_deprecated_keys
from modalkit_config._paths import KeyPath, format_key_path
from modalkit_config._yaml import read_yaml
from modalkit_config.errors import (
    ConfigFileNotFoundError,
    ConfigIssue,
    ConfigSyntaxError,
    ConfigValidationError,
    ModalkitDeprecationWarning,
)

if TYPE_CHECKING:
    from modalkit_config._models import Settings

__all__ = ["config_files", "load_settings", "settings_from_dict"]

ENV_PREFIX = "MODALKIT_"
CONFIG_ENV_VAR = "MODALKIT_CONFIG"
DEFAULT_CONFIG_FILE = "modalkit.yaml"

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class LoadOptions:
    """What `load_settings` (or `settings_from_dict`) asks of the ``Settings()`` call it makes."""

    paths: StrPath | Sequence[StrPath] | None = None
    env: Mapping[str, str] | None = None  # None: os.environ, as pydantic-settings reads it
    queue_backends: Collection[str] | None = None
    data: tuple[Mapping[str, Any], str] | None = None  # settings_from_dict: this data, named so, instead of files


load_options: contextvars.ContextVar[LoadOptions] = contextvars.ContextVar("modalkit_load_options")


@dataclass(frozen=True)
class _Origin:
    file: str
    line: int | None = None
    raw: str | None = None


@dataclass
class _Layer:
    """What one source gave: its data and the origin of each key path in it."""

    data: dict[str, Any]
    origins: dict[KeyPath, _Origin] = field(default_factory=dict)


@dataclass
class _Build:
    """One ``Settings()`` call: the options, each source's layer, the problems and warnings found on the way."""

    options: LoadOptions = field(default_factory=LoadOptions)
    fallback_file: str = "<settings>"
    layers: list[_Layer] = field(default_factory=list)  # in the order pydantic-settings called the sources
    issues: list[ConfigIssue] = field(default_factory=list)
    deprecations: list[ConfigIssue] = field(default_factory=list)
    file_rank: dict[str, int] = field(default_factory=dict)
    yaml_files: set[str] = field(default_factory=set)
    # Settings(app_settings=..., model_settings=...): then a missing ./modalkit.yaml (nothing named) is no error.
    complete_arguments: bool = False

    def add_layer(self, layer: _Layer) -> None:
        """Record a source's layer. Sources are called highest priority first, so later layers lose to earlier ones."""
        self.layers.append(layer)
        for origin in layer.origins.values():
            self.file_rank.setdefault(origin.file, len(self.file_rank) if origin.line is not None else 10**6)

    def origins(self) -> dict[KeyPath, _Origin]:
        """Where each key path of the merged settings was set, merging the layers as pydantic-settings merged them."""
        merged = _Layer({})
        for layer in reversed(self.layers):
            _merge(merged, layer)
        return merged.origins

    def warn(self) -> None:
        """Emit one warning per deprecated key, in file order, attributed to the user's call."""
        stacklevel = _caller_stacklevel()
        for issue in sorted(self.deprecations, key=self._order):
            warnings.warn(
                ModalkitDeprecationWarning(f"{_where(issue)}: {issue.key_path} {issue.message}", issue),
                stacklevel=stacklevel,
            )

    def error(self, exc: ValidationError | None, data: dict[str, Any]) -> ConfigValidationError:
        """Our error for pydantic's ``exc`` about ``data`` (if any) and the problems found before: each at the source
        (file and line, or variable) that set the offending value."""
        origins = self.origins()
        issues = list(self.issues)
        if exc is not None:
            raw = {path: origin.raw for path, origin in origins.items() if origin.raw is not None}
            for problem in problems_from(exc, data, raw):
                origin = _origin_of(origins, problem.path, self.fallback_file)
                issues.append(ConfigIssue(origin.file, format_key_path(problem.path), origin.line, problem.message))
        return ConfigValidationError(sorted(issues, key=self._order))

    def _order(self, issue: ConfigIssue) -> tuple[int, bool, int]:
        return (self.file_rank.get(issue.file or "", 10**6), issue.line is None, issue.line or 0)


current_build: contextvars.ContextVar[_Build | None] = contextvars.ContextVar("modalkit_build", default=None)


def load_settings(
    paths: StrPath | Sequence[StrPath] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    env_file: StrPath | None = ".env",
    queue_backends: Collection[str] | None = None,
) -> Settings:
    """Read, merge and validate the configuration: ``Settings(_env_file=env_file)`` reading ``paths`` and ``env``.

    Sources, later ones winning:

    1. the YAML files in ``paths`` (default: the comma-separated list in ``MODALKIT_CONFIG``, else
       ``modalkit.yaml`` in the working directory), each deep-merged over the previous one;
    2. ``MODALKIT_`` variables from ``env_file`` (a ``.env`` file; skipped when absent);
    3. ``MODALKIT_`` variables from ``env`` (default: ``os.environ``).

    A variable names a key path with ``__`` between keys, e.g.
    ``MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE=8``; names are matched case-insensitively
    and values are read as YAML (``8``, ``true``, ``null``, ``["A100", "H100"]``) except where the
    schema wants a string, where the text is kept as written. Other ``MODALKIT_`` variables are ignored.

    Args:
        paths: One path or several; a single string is one path (commas are split only in ``MODALKIT_CONFIG``).
        env: Environment to read variables from; pass ``{}`` to ignore the environment.
        env_file: A ``.env`` file to read ``MODALKIT_`` variables (and ``MODALKIT_CONFIG``) from; None skips it.
        queue_backends: The registered queue backend names, if the caller knows them: a ``queue_config.backend``
            close to one of them but not in them is an error with a "did you mean".

    Returns:
        The validated settings.

    Raises:
        ConfigFileNotFoundError: A named file does not exist.
        ConfigSyntaxError: A file is not valid YAML.
        ConfigValidationError: The merged configuration does not fit the schema (every problem is listed).
    """
    return _settings(LoadOptions(paths=paths, env=env, queue_backends=queue_backends), env_file=env_file)


def config_files(
    paths: StrPath | Sequence[StrPath] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    env_file: StrPath | None = ".env",
) -> list[Path]:
    """The files `load_settings` reads with the same arguments, in order, without reading them.

    For tools that must ship or watch exactly those files (``modalkit deploy`` copies them into the container).
    ``MODALKIT_CONFIG`` counts from ``env`` and from ``env_file``, as in `load_settings`.
    """
    from pydantic_settings import DotEnvSettingsSource

    from modalkit_config._models import Settings

    dotenv = DotEnvSettingsSource(Settings, env_file=None if env_file is None else Path(env_file))
    files, _ = _config_files(paths, config_variable([os.environ if env is None else env, dotenv.env_vars]))
    return [Path(f) for f in files]


def settings_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Settings:
    """Validate settings given as Python data, with the same messages and warnings as files.

    Args:
        data: A mapping shaped like modalkit.yaml (not modified).
        source: Name used for the data in messages.

    Raises:
        ConfigValidationError: The data does not fit the schema (every problem is listed).
    """
    if not isinstance(data, Mapping):
        got = _describe(data)
        issue = ConfigIssue(source, "", None, f"expected a mapping with app_settings and model_settings (got {got})")
        raise ConfigValidationError([issue])
    return _settings(LoadOptions(env={}, data=(data, source)), env_file=None)


def _settings(options: LoadOptions, env_file: StrPath | None) -> Settings:
    from modalkit_config._models import Settings

    token = load_options.set(options)
    try:
        return Settings(_env_file=env_file)
    finally:
        load_options.reset(token)


def _caller_stacklevel() -> int:
    """The ``stacklevel``, for a warning raised by our caller, of the first frame outside modalkit-config and
    pydantic(-settings): the user's ``load_settings()`` or ``Settings()`` call."""
    import pydantic
    import pydantic_settings

    internal = tuple(str(Path(m.__file__ or "").parent) + os.sep for m in (sys.modules[__name__], pydantic))
    internal += (str(Path(pydantic_settings.__file__ or "").parent) + os.sep,)
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(internal):
        frame = frame.f_back
        level += 1
    return level


def _where(issue: ConfigIssue) -> str:
    file = issue.file or ""
    return file if issue.line is None else f"{file}:{issue.line}"


# --- files -------------------------------------------------------------------------------------------


def config_variable(sources: Sequence[Mapping[str, str | None]]) -> str | None:
    """``MODALKIT_CONFIG`` from the first mapping of variables that has it (names in any case)."""
    for variables in sources:
        for name, value in variables.items():
            if name.upper() == CONFIG_ENV_VAR and isinstance(value, str):
                return value
    return None


def read_config_files(paths: StrPath | Sequence[StrPath] | None, named: str | None, build: _Build) -> _Layer:
    """The YAML files deep-merged in order (``named``: the value of ``MODALKIT_CONFIG``, if any), deprecated keys
    renamed, relative local paths made relative to the file that set them."""
    files, hint = _config_files(paths, named)
    build.fallback_file = str(files[0])
    build.yaml_files = {str(path) for path in files}
    merged = _Layer({})
    for path in files:
        layer = _read_file(path, hint)
        build.file_rank.setdefault(str(path), len(build.file_rank))
        rename_deprecated(layer, build)
        _merge(merged, layer)
    _resolve_paths(merged, build.yaml_files)
    return merged


def data_layer(data: Mapping[str, Any], source: str, build: _Build) -> _Layer:
    """Python data as a layer (copied, deprecated keys renamed), named ``source`` in messages."""
    build.fallback_file = source
    layer = _Layer(copy.deepcopy(dict(data)))
    rename_deprecated(layer, build)
    return layer


def _config_files(paths: StrPath | Sequence[StrPath] | None, named: str | None) -> tuple[list[StrPath], str | None]:
    """The files to read, and a hint for the not-found message saying how they were chosen."""
    if paths is not None:
        if isinstance(paths, str | os.PathLike):
            return [paths], None
        if not paths:
            raise ConfigFileNotFoundError([ConfigIssue(None, "", None, "no config file given")])
        return list(paths), None
    if named is not None:
        files = [part.strip() for part in named.split(",") if part.strip()]
        if files:
            return list(files), f"named in {CONFIG_ENV_VAR}"
    return [DEFAULT_CONFIG_FILE], f"looked in the working directory; pass a path or set {CONFIG_ENV_VAR}"


def _read_file(path: StrPath, hint: str | None) -> _Layer:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        message = "config file not found" + (f" ({hint})" if hint else "")
        raise ConfigFileNotFoundError([ConfigIssue(name, "", None, message)]) from None
    except IsADirectoryError:
        raise ConfigFileNotFoundError([ConfigIssue(name, "", None, "is a directory, not a config file")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigSyntaxError([ConfigIssue(name, "", None, f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ConfigFileNotFoundError([ConfigIssue(name, "", None, f"cannot read: {exc.strerror}")]) from None
    document = read_yaml(text, name)
    if document.data is None:
        return _Layer({})
    if not isinstance(document.data, dict):
        message = (
            f"expected a mapping with app_settings and model_settings at the top level (got {_describe(document.data)})"
        )
        raise ConfigValidationError([ConfigIssue(name, "", document.root_line, message)])
    origins = {key: _Origin(name, line, document.raw.get(key)) for key, line in document.lines.items()}
    for key, raw in document.raw.items():
        origins.setdefault(key, _Origin(name, None, raw))
    return _Layer(document.data, origins)


def _resolve_paths(layer: _Layer, yaml_files: Collection[str]) -> None:
    """Make each relative local path set in a YAML file relative to that file's folder.

    Paths from environment variables (and ``.env``) are other layers: they keep the working directory as their base.
    """
    candidates: list[KeyPath] = [
        ("model_settings", "local_model_repository_folder"),
        ("app_settings", "server_config", "journal_path"),
    ]
    mounts = _get_path(layer.data, ("app_settings", "deployment_config", "mounts"))
    if isinstance(mounts, list):
        candidates += [("app_settings", "deployment_config", "mounts", i, "local_path") for i in range(len(mounts))]
    for path in candidates:
        parent: Any = layer.data
        for key in path[:-1]:
            if isinstance(parent, dict):
                parent = parent.get(key)
            else:
                parent = parent[key] if isinstance(parent, list) and isinstance(key, int) else None
        value = parent.get(path[-1]) if isinstance(parent, dict) else None
        origin = _origin_of(layer.origins, path, "")
        if (
            isinstance(value, str)
            and value
            and value != ":memory:"  # SQLite's name for no file (server_config.journal_path)
            and origin.file in yaml_files
            and not Path(value).is_absolute()
        ):
            parent[path[-1]] = str(Path(origin.file).resolve().parent / value)


# --- deprecated keys, merging, origins -----------------------------------------------------------------


def rename_deprecated(layer: _Layer, build: _Build) -> None:
    """Rename the deprecated keys of one layer (a conflict with the new name is an issue; each rename a warning)."""
    for section, table in DEPRECATED_KEYS.items():
        node = _get_path(layer.data, section)
        if not isinstance(node, dict):
            continue
        renamed_data, renamed, conflicts = rename_deprecated_keys(node, table)
        for old, new in conflicts:
            origin = _origin_of(layer.origins, (*section, old), build.fallback_file)
            message = f"{old!r} is the deprecated name of {format_key_path(new)!r}; give only one of them"
            build.issues.append(ConfigIssue(origin.file, format_key_path((*section, old)), origin.line, message))
            # Validation would call the old key unknown; one message about it is enough.
            renamed_data.pop(old, None)
        for old, new in renamed:
            origin = _origin_of(layer.origins, (*section, old), build.fallback_file)
            _move_origins(layer.origins, (*section, old), (*section, *new))
            message = f"is deprecated; use {format_key_path((*section, *new))} instead"
            build.deprecations.append(ConfigIssue(origin.file, format_key_path((*section, old)), origin.line, message))
        _set_path(layer.data, section, renamed_data)


def _merge(base: _Layer, layer: _Layer) -> None:
    """Deep-merge ``layer`` over ``base``, origins too: mappings merge key by key, anything else replaces."""

    def merge(into: dict[str, Any], overlay: dict[str, Any], prefix: KeyPath) -> None:
        for key, value in overlay.items():
            path = (*prefix, key)
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value, path)
            else:
                if key in into:
                    _walk_paths(into[key], path, base.origins.pop)
                into[key] = copy.deepcopy(value)
                _walk_paths(value, path, copy_origin)
            if path in layer.origins:
                base.origins[path] = layer.origins[path]

    def copy_origin(path: KeyPath, _: None = None) -> None:
        if path in layer.origins:
            base.origins[path] = layer.origins[path]

    merge(base.data, layer.data, ())


def _walk_paths(value: Any, path: KeyPath, visit: Callable[[KeyPath, None], object]) -> None:
    """Call ``visit(p, None)`` for ``path`` and every key path inside ``value`` (cost: the size of ``value``)."""
    visit(path, None)
    if isinstance(value, dict):
        for key, item in value.items():
            _walk_paths(item, (*path, key), visit)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk_paths(item, (*path, index), visit)


def _origin_of(origins: dict[KeyPath, _Origin], path: KeyPath, fallback: str) -> _Origin:
    """Where ``path`` was set; for a key that is absent, where its nearest parent was."""
    for end in range(len(path), 0, -1):
        origin = origins.get(path[:end])
        if origin is not None:
            return origin if end == len(path) else _Origin(origin.file, origin.line)
    return _Origin(fallback)


def _move_origins(origins: dict[KeyPath, _Origin], old: KeyPath, new: KeyPath) -> None:
    for path in [p for p in origins if p[: len(old)] == old]:
        origins[(*new, *path[len(old) :])] = origins.pop(path)


def _set_path(data: dict[str, Any], path: KeyPath, value: Any) -> None:
    node: dict[Any, Any] = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def _get_path(data: dict[str, Any], path: KeyPath) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
