"""The settings sources of `Settings`: the YAML files, and pydantic-settings' environment and ``.env`` sources
brought in line with what `load_settings()` does with them.

pydantic-settings reads the variables (``os.environ``, the ``.env`` files through python-dotenv) and nests them
on ``__``. `MatchedEnvSource` wraps that result: a key takes the spelling of the YAML key it overrides
(pydantic-settings lower-cases every name, so ``...MODEL_ENTRIES__MYMODEL`` would otherwise add an entry beside
``MyModel``), a value is read as YAML where the schema takes no string, and the variable (with its ``.env``
file and line) that set each key is recorded, so an error names it.
"""

from __future__ import annotations

import contextvars
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, DotEnvSettingsSource, EnvSettingsSource, PydanticBaseSettingsSource

from modalkit_config._loader import _CASE_KEPT as CASE_KEPT
from modalkit_config._loader import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    StrPath,
    _Build,
    _Origin,
    _read_variables,
    merged_files,
)
from modalkit_config._loader import _env_value as env_value
from modalkit_config._paths import KeyPath

# The YAML read for the Settings() call under way (reset by Settings.__init__), shared by the sources.
last_build: contextvars.ContextVar[_Build | None] = contextvars.ContextVar("modalkit_yaml_build", default=None)
# True while Settings(app_settings=..., model_settings=...) is built from complete arguments: then a missing
# ./modalkit.yaml (the default lookup, nothing named) is no error, as in the earlier modalkit.
complete_arguments: contextvars.ContextVar[bool] = contextvars.ContextVar("modalkit_complete_args", default=False)


class YamlConfigSource(PydanticBaseSettingsSource):
    """modalkit.yaml and its overlays (``MODALKIT_CONFIG``), deep-merged, with each key's file and line kept.

    Args:
        settings_cls: The settings class.
        paths: The files to read; default: ``MODALKIT_CONFIG``'s list, else ``modalkit.yaml``.
    """

    def __init__(self, settings_cls: type[BaseSettings], paths: StrPath | Sequence[StrPath] | None = None) -> None:
        super().__init__(settings_cls)
        self.paths = paths
        self._build: _Build | None = None  # sources are built anew for each Settings() call

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the whole merged document at once.
        return None, field_name, False

    def build(self) -> _Build:
        """The merged YAML files, read once per ``Settings()`` call (the other sources match keys against it)."""
        if self._build is None:
            if (
                complete_arguments.get()
                and self.paths is None
                and CONFIG_ENV_VAR not in _read_variables(os.environ, None)
                and not Path(DEFAULT_CONFIG_FILE).is_file()
            ):
                self._build = _Build(fallback_file="<arguments>")  # nothing to read, and nothing missing
            else:
                self._build = merged_files(self.paths, stacklevel=7)
                last_build.set(self._build)
        return self._build

    def __call__(self) -> dict[str, Any]:
        return self.build().data


class MatchedEnvSource(PydanticBaseSettingsSource):
    """pydantic-settings' environment or ``.env`` source, with keys, values and origins as `load_settings` has them.

    Args:
        source: The ``EnvSettingsSource`` (or ``DotEnvSettingsSource``) pydantic-settings built for this call.
        yaml: The YAML source whose keys the variables' keys are matched against.
    """

    def __init__(self, source: EnvSettingsSource, yaml: YamlConfigSource) -> None:
        super().__init__(source.settings_cls)
        self.source = source
        self.yaml = yaml

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the source's whole result at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data = self.source()
        if not data:
            return data
        build = self.yaml.build()
        names = self._variables()
        matched: dict[str, Any] = _match(data, build.data, (), names)
        origins: dict[KeyPath, _Origin] = {}
        _record(matched, (), names, origins)
        for path, origin in origins.items():
            build.origins[path] = origin
            build.file_rank.setdefault(origin.file, len(build.file_rank) if origin.line is not None else 10**6)
        return matched

    def _variables(self) -> dict[str, _Origin]:
        """Lower-cased variable name -> where it was set, with the name as written (``$NAME``, or file and line)."""
        if isinstance(self.source, DotEnvSettingsSource):
            return _dotenv_origins(self.source.env_file)
        return {
            name.lower(): _Origin(f"${name}", None, name) for name in os.environ if name.upper().startswith(ENV_PREFIX)
        }


def _match(data: Any, yaml: Any, path: KeyPath, names: Mapping[str, _Origin]) -> Any:
    """``data`` with each key spelled as in ``yaml`` where it exists there (else as the variable wrote it, for
    case-kept sections, else lower-cased), and each string value read as YAML where the schema takes no string."""
    if not isinstance(data, dict):
        return env_value(data, path) if isinstance(data, str) else data
    matched: dict[str, Any] = {}
    for key, value in data.items():
        spelled = key
        if isinstance(yaml, dict):
            spelled = next((k for k in yaml if isinstance(k, str) and k.lower() == key.lower()), key)
        if spelled == key and path in CASE_KEPT:
            spelled = _as_written(path, key, names)
        child_yaml = yaml.get(spelled) if isinstance(yaml, dict) else None
        matched[spelled] = _match(value, child_yaml, (*path, spelled), names)
    return matched


def _as_written(path: KeyPath, key: str, names: Mapping[str, _Origin]) -> str:
    """The key with the case its variable was written in (image environment variable names keep theirs)."""
    variable = (ENV_PREFIX + "__".join(str(k) for k in (*path, key))).lower()
    origin = names.get(variable)
    if origin is None or origin.raw is None:
        return key
    return origin.raw[-len(key) :]


def _record(data: Any, path: KeyPath, names: Mapping[str, _Origin], origins: dict[KeyPath, _Origin]) -> None:
    """Where each key path of ``data`` came from: the variable named for it, or for its nearest parent (a JSON
    value such as ``MODALKIT_APP_SETTINGS='{...}'``)."""
    if path:
        origin = names.get((ENV_PREFIX + "__".join(str(k) for k in path)).lower())
        if origin is not None:
            origins[path] = _Origin(origin.file, origin.line)
        elif path[:-1] in origins:
            origins[path] = origins[path[:-1]]
    if isinstance(data, dict):
        for key, value in data.items():
            _record(value, (*path, key), names, origins)


def _dotenv_origins(env_file: Any) -> dict[str, _Origin]:
    """Lower-cased name -> file and line of each ``MODALKIT_`` entry of the ``.env`` file(s) (later files win).

    python-dotenv parses the files (as pydantic-settings has it do for the values); only the line numbers are
    read here, for messages.
    """
    files = [env_file] if isinstance(env_file, str | os.PathLike) else list(env_file or [])
    found: dict[str, _Origin] = {}
    for file in files:
        try:
            text = Path(file).expanduser().read_text(encoding="utf-8")
        except OSError:
            continue  # pydantic-settings skips an absent file too
        for binding in parse_stream(io.StringIO(text)):
            if binding.key is None or not binding.key.upper().startswith(ENV_PREFIX):
                continue
            before = binding.original.string[: binding.original.string.find(binding.key)]
            line = binding.original.line + before.count("\n")
            found[binding.key.lower()] = _Origin(str(file), line, binding.key)
    return found
