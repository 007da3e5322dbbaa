"""Loading settings: YAML files, overlays, ``MODALKIT_`` environment variables and ``.env``.

Each source becomes a layer (data plus where each key came from). Deprecated keys are renamed inside
each layer, layers are deep-merged in order (files, then ``.env``, then the environment), and the
result is validated once. Every problem is reported against the layer that set the offending value.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modalkit_config._messages import accepts_string, annotation_at, problems_from
from modalkit_config._models import DEPRECATED_KEYS, Settings, known_queue_backends, rename_deprecated_keys
from modalkit_config._paths import KeyPath, format_key_path
from modalkit_config._yaml import read_yaml
from modalkit_config.errors import (
    ConfigFileNotFoundError,
    ConfigIssue,
    ConfigSyntaxError,
    ConfigValidationError,
    ModalkitDeprecationWarning,
)

__all__ = ["config_files", "load_settings", "merged_files", "settings_error", "settings_from_dict"]

ENV_PREFIX = "MODALKIT_"
CONFIG_ENV_VAR = "MODALKIT_CONFIG"
DEFAULT_CONFIG_FILE = "modalkit.yaml"
_ROOT_KEYS = ("app_settings", "model_settings")
_NULL_SPELLINGS = frozenset({"null", "Null", "NULL", "~"})
# Keys under these paths are environment variable names, conventionally upper case: keep them as written.
_CASE_KEPT = (("app_settings", "build_config", "env"),)

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class _Origin:
    file: str
    line: int | None = None
    raw: str | None = None


@dataclass
class _Layer:
    """One source of settings: its data and the origin of each key path it sets."""

    data: dict[str, Any]
    origins: dict[KeyPath, _Origin] = field(default_factory=dict)


@dataclass
class _Build:
    """Everything gathered while building one Settings: merged data, origins, issues, warnings."""

    fallback_file: str
    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[KeyPath, _Origin] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    deprecations: list[ConfigIssue] = field(default_factory=list)
    file_rank: dict[str, int] = field(default_factory=dict)
    yaml_files: set[str] = field(default_factory=set)
    queue_backends: Collection[str] | None = None


def load_settings(
    paths: StrPath | Sequence[StrPath] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    env_file: StrPath | None = ".env",
    queue_backends: Collection[str] | None = None,
) -> Settings:
    """Read, merge and validate the configuration.

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
    variables = _read_variables(os.environ if env is None else env, env_file)
    files, default = _config_files(paths, variables)
    layers = [_read_file(path, default) for path in files]
    build = _Build(fallback_file=str(files[0]), yaml_files={str(path) for path in files}, queue_backends=queue_backends)
    return _build(build, [(str(path), layer) for path, layer in zip(files, layers, strict=True)], variables)


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
    variables = _read_variables(os.environ if env is None else env, env_file)
    files, _ = _config_files(paths, variables)
    return [Path(f) for f in files]


def settings_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Settings:
    """Validate settings given as Python data, with the same messages and warnings as files.

    Args:
        data: A mapping shaped like modalkit.yaml (not modified).
        source: Name used for the data in messages.

    Raises:
        ConfigValidationError: The data does not fit the schema (every problem is listed).
    """
    build = _Build(fallback_file=source)
    if not isinstance(data, Mapping):
        got = _describe(data)
        issue = ConfigIssue(source, "", None, f"expected a mapping with app_settings and model_settings (got {got})")
        raise ConfigValidationError([issue])
    return _build(build, [(source, _Layer(copy.deepcopy(dict(data))))], {})


def _build(build: _Build, layers: list[tuple[str, _Layer]], variables: dict[str, tuple[str, _Origin]]) -> Settings:
    """Merge the layers and the variables, warn about deprecated keys, validate.

    Both public functions call this directly, and this emits the warnings itself, so a fixed stacklevel
    attributes each warning to the user's call.
    """
    for name, layer in layers:
        build.file_rank.setdefault(name, len(build.file_rank))
        _rename_deprecated(layer, build)
        _merge(build, layer)
    if variables:
        env_layer = _variables_layer(variables, build)
        _rename_deprecated(env_layer, build)
        _merge(build, env_layer)
    _resolve_paths(build)
    _warn_deprecations(build, stacklevel=4)
    return _validate(build)


def _warn_deprecations(build: _Build, stacklevel: int) -> None:
    for issue in sorted(build.deprecations, key=lambda i: _issue_order(build, i)):
        where = _where(issue)
        warnings.warn(
            ModalkitDeprecationWarning(f"{where}: {issue.key_path} {issue.message}", issue),
            stacklevel=stacklevel,
        )


def merged_files(paths: StrPath | Sequence[StrPath] | None = None, *, stacklevel: int = 6) -> _Build:
    """Read and deep-merge the YAML files `load_settings` would read (``MODALKIT_CONFIG`` from ``os.environ``).

    Deprecated keys are renamed (with a warning); nothing is validated. The settings source of
    `Settings` uses this; pydantic-settings adds the environment, ``.env`` and secrets on top.
    """
    variables = _read_variables(os.environ, None)
    files, default = _config_files(paths, variables)
    build = _Build(fallback_file=str(files[0]), yaml_files={str(path) for path in files})
    for path in files:
        layer = _read_file(path, default)
        build.file_rank.setdefault(str(path), len(build.file_rank))
        _rename_deprecated(layer, build)
        _merge(build, layer)
    _resolve_paths(build)
    _warn_deprecations(build, stacklevel=stacklevel)
    return build


def settings_error(exc: ValidationError, data: dict[str, Any], build: _Build | None) -> ConfigValidationError:
    """Turn pydantic's error for ``data`` into ours: each problem at the file and line that set it.

    A value that no YAML file set came from pydantic-settings' other sources; it is named by its variable.
    """
    build = build or _Build(fallback_file="<settings>")
    raw = {path: origin.raw for path, origin in build.origins.items() if origin.raw is not None}
    issues = list(build.issues)
    for problem in problems_from(exc, data, raw):
        if any(problem.path[:end] in build.origins for end in range(len(problem.path), 0, -1)):
            origin = _origin_of(build.origins, problem.path, build.fallback_file)
        else:  # a source that records no origins (a secrets directory): name the top-level entry
            origin = _Origin("$" + ENV_PREFIX + "__".join(str(key).upper() for key in problem.path[:1]))
        issues.append(ConfigIssue(origin.file, format_key_path(problem.path), origin.line, problem.message))
    return ConfigValidationError(sorted(issues, key=lambda issue: _issue_order(build, issue)))


def _where(issue: ConfigIssue) -> str:
    file = issue.file or ""
    return file if issue.line is None else f"{file}:{issue.line}"


# --- files -------------------------------------------------------------------------------------------


def _config_files(
    paths: StrPath | Sequence[StrPath] | None, variables: dict[str, tuple[str, _Origin]]
) -> tuple[list[StrPath], str | None]:
    """The files to read, and a hint for the not-found message saying how they were chosen."""
    if paths is not None:
        if isinstance(paths, str | os.PathLike):
            return [paths], None
        if not paths:
            raise ConfigFileNotFoundError([ConfigIssue(None, "", None, "no config file given")])
        return list(paths), None
    named = variables.get(CONFIG_ENV_VAR)
    if named is not None:
        files = [part.strip() for part in named[0].split(",") if part.strip()]
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


# --- environment -------------------------------------------------------------------------------------


def _read_variables(env: Mapping[str, str], env_file: StrPath | None) -> dict[str, tuple[str, _Origin]]:
    """``MODALKIT_`` variables from the .env file, then from the environment (which wins)."""
    variables: dict[str, tuple[str, _Origin]] = {}
    if env_file is not None:
        for name, value, line in _read_dotenv(env_file):
            if name.upper().startswith(ENV_PREFIX):
                variables[name.upper()] = (value, _Origin(str(env_file), line))
    for name, value in env.items():
        if name.upper().startswith(ENV_PREFIX):
            variables[name.upper()] = (value, _Origin(f"${name}"))
    return variables


def _read_dotenv(path: StrPath) -> list[tuple[str, str, int]]:
    """Read ``NAME=value`` lines (``export`` prefix, quotes and ``#`` comments allowed); absent file -> none.

    Escapes inside double quotes are not interpreted; modalkit's variables do not need them.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    entries: list[tuple[str, str, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.removeprefix("export ").lstrip()
        name, sep, value = stripped.partition("=")
        if not sep:
            continue
        value = value.strip()
        if value[:1] in ("'", '"') and value.find(value[0], 1) != -1:
            value = value[1 : value.find(value[0], 1)]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        entries.append((name.strip(), value, number))
    return entries


def _variables_layer(variables: dict[str, tuple[str, _Origin]], build: _Build) -> _Layer:
    layer = _Layer({})
    parsed: list[tuple[KeyPath, str, _Origin]] = []
    for name, (value, origin) in variables.items():
        segments = name[len(ENV_PREFIX) :].split("__")
        if segments[0].lower() not in _ROOT_KEYS:
            continue  # MODALKIT_CONFIG, MODALKIT_APP_POSTFIX, ...: not settings
        if any(not segment for segment in segments):
            message = "empty key in the variable name: separate keys with exactly two underscores"
            build.issues.append(ConfigIssue(origin.file, "", origin.line, message))
            continue
        path = _match_case(segments, build.data)
        parsed.append((path, value, origin))
    # Shorter paths first, so MODALKIT_APP_SETTINGS__BATCH_CONFIG='{...}' does not undo a more specific variable.
    for path, value, origin in sorted(parsed, key=lambda item: len(item[0])):
        _set_path(layer.data, path, _env_value(value, path))
        _drop_origins(layer.origins, path)
        layer.origins[path] = _Origin(origin.file, origin.line, value)
        build.file_rank.setdefault(origin.file, len(build.file_rank) if origin.line is not None else 10**6)
    return layer


def _match_case(segments: list[str], data: dict[str, Any]) -> KeyPath:
    """Match keys case-insensitively, using the spelling of an existing key where there is one.

    So ``MODALKIT_..._MODEL_ENTRIES__MYMODEL`` reaches ``MyModel``. A new key is lower-cased, except the
    names of image environment variables (``build_config.env``), which keep the case they were given in.
    """
    path: list[str | int] = []
    node: Any = data
    for segment in segments:
        key: str | int = segment if tuple(path) in _CASE_KEPT else segment.lower()
        if isinstance(node, dict):
            for existing in node:
                if isinstance(existing, str) and existing.lower() == segment.lower():
                    key = existing
                    break
        path.append(key)
        node = node.get(key) if isinstance(node, dict) else None
    return tuple(path)


def _env_value(text: str, path: KeyPath) -> Any:
    """Read an environment value as YAML, except where the schema takes a string and the text is a scalar."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if accepts_string(annotation_at(path)) and not isinstance(value, dict | list):
        return None if text.strip() in _NULL_SPELLINGS else text
    return value


def _set_path(data: dict[str, Any], path: KeyPath, value: Any) -> None:
    node: dict[Any, Any] = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


# --- deprecated keys, merging, validation --------------------------------------------------------------


def _rename_deprecated(layer: _Layer, build: _Build) -> None:
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


def _merge(build: _Build, layer: _Layer) -> None:
    """Deep-merge ``layer`` over what was built so far: mappings merge key by key, anything else replaces."""

    def merge(base: dict[str, Any], overlay: dict[str, Any], prefix: KeyPath) -> None:
        for key, value in overlay.items():
            path = (*prefix, key)
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value, path)
            else:
                if key in base:
                    _walk_paths(base[key], path, build.origins.pop)
                base[key] = copy.deepcopy(value)
                _walk_paths(value, path, copy_origin)
            if path in layer.origins:
                build.origins[path] = layer.origins[path]

    def copy_origin(path: KeyPath, _: None = None) -> None:
        if path in layer.origins:
            build.origins[path] = layer.origins[path]

    merge(build.data, layer.data, ())


def _walk_paths(value: Any, path: KeyPath, visit: Callable[[KeyPath, None], object]) -> None:
    """Call ``visit(p, None)`` for ``path`` and every key path inside ``value`` (cost: the size of ``value``)."""
    visit(path, None)
    if isinstance(value, dict):
        for key, item in value.items():
            _walk_paths(item, (*path, key), visit)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk_paths(item, (*path, index), visit)


def _validate(build: _Build) -> Settings:
    try:
        token = known_queue_backends.set(build.queue_backends)
        try:
            settings = Settings.model_validate(build.data)
        finally:
            known_queue_backends.reset(token)
    except ValidationError as exc:
        raw = {path: origin.raw for path, origin in build.origins.items() if origin.raw is not None}
        for problem in problems_from(exc, build.data, raw):
            origin = _origin_of(build.origins, problem.path, build.fallback_file)
            build.issues.append(ConfigIssue(origin.file, format_key_path(problem.path), origin.line, problem.message))
    else:
        if not build.issues:
            settings.keep_origins({path: (o.file, o.line) for path, o in build.origins.items()}, build.fallback_file)
            return settings
    raise ConfigValidationError(sorted(build.issues, key=lambda issue: _issue_order(build, issue)))


def _resolve_paths(build: _Build) -> None:
    """Make each relative local path set in a YAML file relative to that file's folder.

    Paths from environment variables (and ``.env``) keep the working directory as their base.
    """
    candidates: list[KeyPath] = [
        ("model_settings", "local_model_repository_folder"),
        ("app_settings", "server_config", "journal_path"),
    ]
    mounts = _get_path(build.data, ("app_settings", "deployment_config", "mounts"))
    if isinstance(mounts, list):
        candidates += [("app_settings", "deployment_config", "mounts", i, "local_path") for i in range(len(mounts))]
    for path in candidates:
        parent: Any = build.data
        for key in path[:-1]:
            if isinstance(parent, dict):
                parent = parent.get(key)
            else:
                parent = parent[key] if isinstance(parent, list) and isinstance(key, int) else None
        value = parent.get(path[-1]) if isinstance(parent, dict) else None
        origin = _origin_of(build.origins, path, "")
        if (
            isinstance(value, str)
            and value
            and value != ":memory:"  # SQLite's name for no file (server_config.journal_path)
            and origin.file in build.yaml_files
            and not Path(value).is_absolute()
        ):
            parent[path[-1]] = str(Path(origin.file).resolve().parent / value)


def _issue_order(build: _Build, issue: ConfigIssue) -> tuple[int, bool, int]:
    rank = build.file_rank.get(issue.file or "", 10**6)
    return (rank, issue.line is None, issue.line or 0)


def _origin_of(origins: dict[KeyPath, _Origin], path: KeyPath, fallback: str) -> _Origin:
    """Where ``path`` was set; for a key that is absent, where its nearest parent was."""
    for end in range(len(path), 0, -1):
        origin = origins.get(path[:end])
        if origin is not None:
            return origin if end == len(path) else _Origin(origin.file, origin.line)
    return _Origin(fallback)


def _drop_origins(origins: dict[KeyPath, _Origin], path: KeyPath) -> None:
    for stale in [p for p in origins if p[: len(path)] == path]:
        del origins[stale]


def _move_origins(origins: dict[KeyPath, _Origin], old: KeyPath, new: KeyPath) -> None:
    for path in [p for p in origins if p[: len(old)] == old]:
        origins[(*new, *path[len(old) :])] = origins.pop(path)


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
