"""The settings sources of `Settings`: the YAML files, and pydantic-settings' own sources, wrapped to record where
each value came from.

pydantic-settings reads the variables (``os.environ``, the ``.env`` files through python-dotenv), nests them on
``__`` and decodes JSON; it reads a secrets directory. `MatchedEnvSource` wraps its environment and ``.env``
sources: only variables that name a settings key are passed on (a ``.env`` file may hold others, and
``extra="forbid"`` would reject them), a shorter variable comes before a longer one (so
``MODALKIT_APP_SETTINGS__BATCH_CONFIG='{...}'`` does not undo a more specific variable), a key takes the spelling
of the YAML key it overrides (pydantic-settings lower-cases every name, so ``...MODEL_ENTRIES__MYMODEL`` would add
an entry beside ``MyModel``), a value is read as YAML where the schema takes no string, a value that is not JSON is
passed on for validation to report under its variable (pydantic-settings would stop at the first one), and each key
records the variable (with its ``.env`` file and line) that set it. `SecretsOrigins` records the secret files.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from dotenv.parser import parse_stream
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
)

from modalkit_config._loader import (
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    StrPath,
    _Build,
    _Layer,
    _Origin,
    config_variable,
    current_build,
    data_layer,
    read_config_files,
    rename_deprecated,
)
from modalkit_config._messages import accepts_container, accepts_string, annotation_at
from modalkit_config._paths import KeyPath
from modalkit_config.errors import ConfigIssue

__all__ = ["MatchedEnvSource", "SecretsOrigins", "YamlConfigSource"]

# Keys under these paths are environment variable names, conventionally upper case: keep them as written.
CASE_KEPT = (("app_settings", "build_config", "env"),)
_NULL_SPELLINGS = frozenset({"null", "Null", "NULL", "~"})


def _build() -> _Build:
    """The state of the ``Settings()`` call under way (a source used on its own gets a fresh one)."""
    build = current_build.get()
    if build is None:
        build = _Build()
        current_build.set(build)
    return build


class YamlConfigSource(PydanticBaseSettingsSource):
    """modalkit.yaml and its overlays (``MODALKIT_CONFIG``), deep-merged, with each key's file and line kept.

    Args:
        settings_cls: The settings class.
        paths: The files to read; default: ``MODALKIT_CONFIG``'s list, else ``modalkit.yaml``.
    """

    def __init__(self, settings_cls: type[BaseSettings], paths: StrPath | Sequence[StrPath] | None = None) -> None:
        super().__init__(settings_cls)
        self.paths = paths
        # Where MODALKIT_CONFIG is looked up, highest priority first; `Settings` names its environment and .env
        # sources here. A source used on its own reads os.environ.
        self.variables: Callable[[], Sequence[Mapping[str, str | None]]] = lambda: [os.environ]
        self._layer: _Layer | None = None  # sources are built anew for each Settings() call

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the whole merged document at once.
        return None, field_name, False

    def layer(self) -> _Layer:
        """The merged YAML files, read once per ``Settings()`` call (the other sources match keys against it)."""
        if self._layer is None:
            build = _build()
            named = config_variable(self.variables())
            if build.options.data is not None:
                self._layer = data_layer(*build.options.data, build)
            elif (
                build.complete_arguments
                and self.paths is None
                and named is None
                and not Path(DEFAULT_CONFIG_FILE).is_file()
            ):
                # Settings(app_settings=..., model_settings=...) and no file named or present: nothing is missing.
                build.fallback_file = "<arguments>"
                self._layer = _Layer({})
            else:
                self._layer = read_config_files(self.paths, named, build)
        return self._layer

    def __call__(self) -> dict[str, Any]:
        layer = self.layer()
        _build().add_layer(layer)
        return layer.data


class MatchedEnvSource(PydanticBaseSettingsSource):
    """pydantic-settings' environment or ``.env`` source, with keys, values and origins as `load_settings` has them.

    Args:
        source: The ``EnvSettingsSource`` (or ``DotEnvSettingsSource``) pydantic-settings built for this call.
        yaml: The YAML source whose keys the variables' keys are matched against.
        environ: The variables to read instead of ``os.environ`` (`load_settings`'s ``env``; not for ``.env``).
    """

    def __init__(
        self, source: EnvSettingsSource, yaml: YamlConfigSource, environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(source.settings_cls)
        self.source = source
        self.yaml = yaml
        if environ is not None and not isinstance(source, DotEnvSettingsSource):
            source.env_vars = {
                name if source.case_sensitive else name.lower(): value
                for name, value in environ.items()
                if not (source.env_ignore_empty and value == "")
            }
        # pydantic-settings' JSON decoding raises one SettingsError, naming no variable, at the first value that is
        # not JSON; the lenient decoder reads YAML instead (a superset) and passes anything else on for validation.
        setattr(source, "decode_complex_value", _lenient(source.decode_complex_value))  # noqa: B010
        self.names = self._variables(environ)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the source's whole result at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        build = _build()
        prefix = self.source.env_prefix.lower()
        delimiter = self.source.env_nested_delimiter or "__"
        fields = {name.lower() for name in self.settings_cls.model_fields}
        kept: dict[str, str | None] = {}
        for name, value in self.source.env_vars.items():
            if not name.lower().startswith(prefix):
                continue
            segments = name[len(prefix) :].split(delimiter)
            if segments[0].lower() not in fields:
                continue  # MODALKIT_CONFIG, MODALKIT_APP_POSTFIX, unrelated .env entries: not settings
            if not all(segments):
                origin = self.names.get(name.lower(), _Origin(f"${name}"))
                message = "empty key in the variable name: separate keys with exactly two underscores"
                build.issues.append(ConfigIssue(origin.file, "", origin.line, message))
                continue
            kept[name] = value
        data: dict[str, Any] = {}
        if kept:
            variables = self.source.env_vars
            # Shorter names first: pydantic-settings nests them in this order, so a more specific variable wins.
            self.source.env_vars = dict(sorted(kept.items(), key=lambda item: item[0].count(delimiter)))
            try:
                data = self.source()
            finally:
                self.source.env_vars = variables  # MODALKIT_CONFIG is read from them too
        if not data:
            return data
        matched = _match(data, self.yaml.layer().data, (), self.names)
        layer = _Layer(matched, _record(matched, self.names))
        rename_deprecated(layer, build)
        build.add_layer(layer)
        return layer.data

    def _variables(self, environ: Mapping[str, str] | None) -> dict[str, _Origin]:
        """Lower-cased variable name -> where it was set, with the name as written (``$NAME``, or file and line)."""
        if isinstance(self.source, DotEnvSettingsSource):
            return _dotenv_origins(self.source.env_file)
        prefix = self.source.env_prefix.lower()
        return {
            name.lower(): _Origin(f"${name}", None, name)
            for name in (os.environ if environ is None else environ)
            if name.lower().startswith(prefix)
        }


class SecretsOrigins(PydanticBaseSettingsSource):
    """pydantic-settings' secrets directory source, recording the file each value was read from.

    Args:
        source: The ``SecretsSettingsSource`` pydantic-settings built for this call.
    """

    def __init__(self, source: SecretsSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self.source = source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the source's whole result at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data = self.source()
        if not data:
            return data
        directories = self.source.secrets_dir
        directories = [directories] if isinstance(directories, str | os.PathLike) else list(directories or [])
        files: dict[str, _Origin] = {}
        for directory in directories:  # a later directory wins, as in pydantic-settings
            for path in Path(directory).expanduser().iterdir() if Path(directory).expanduser().is_dir() else []:
                files[path.name.lower()] = _Origin(str(path))
        origins: dict[KeyPath, _Origin] = {
            (key,): files.get(f"{self.source.env_prefix}{key}".lower(), _Origin(str(key))) for key in data
        }
        layer = _Layer(data, _spread(data, origins))
        rename_deprecated(layer, _build())
        _build().add_layer(layer)
        return layer.data


def _lenient(decode: Callable[[str, FieldInfo, Any], Any]) -> Callable[[str, FieldInfo, Any], Any]:
    def decode_leniently(field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return decode(field_name, field, value)
        except ValueError:
            try:
                return yaml.safe_load(value) if isinstance(value, str) else value
            except yaml.YAMLError:
                return value  # validation reports it, under its variable

    return decode_leniently


def _match(data: Any, yaml_data: Any, path: KeyPath, names: Mapping[str, _Origin]) -> Any:
    """``data`` with each key spelled as in ``yaml_data`` where it exists there (else as the variable wrote it, for
    case-kept sections, else lower-cased), and each variable's text read as YAML where the schema takes no string.

    Only a variable's own text is read so: the strings inside a JSON value are JSON's.
    """
    if not isinstance(data, dict):
        if isinstance(data, str) and _variable(path) in names:
            return _env_value(data, path)
        return data
    matched: dict[str, Any] = {}
    for key, value in data.items():
        spelled = key
        if isinstance(yaml_data, dict):
            spelled = next((k for k in yaml_data if isinstance(k, str) and k.lower() == key.lower()), key)
        if spelled == key and path in CASE_KEPT:
            spelled = _as_written(path, key, names)
        child_yaml = yaml_data.get(spelled) if isinstance(yaml_data, dict) else None
        matched[spelled] = _match(value, child_yaml, (*path, spelled), names)
    return matched


def _env_value(text: str, path: KeyPath) -> Any:
    """Read an environment value as YAML, except where the schema takes a string: then a scalar stays as written,
    and so does any text where the schema takes no list or mapping."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    annotation = annotation_at(path)
    # Where the schema takes a string and no list or mapping, the text is meant as written (``:memory:`` reads
    # as a YAML mapping); elsewhere a list or mapping is read as one.
    if accepts_string(annotation) and (not isinstance(value, dict | list) or not accepts_container(annotation)):
        return None if text.strip() in _NULL_SPELLINGS else text
    return value


def _variable(path: KeyPath) -> str:
    return (ENV_PREFIX + "__".join(str(k) for k in path)).lower()


def _as_written(path: KeyPath, key: str, names: Mapping[str, _Origin]) -> str:
    """The key with the case its variable was written in (image environment variable names keep theirs)."""
    origin = names.get(_variable((*path, key)))
    if origin is None or origin.raw is None:
        return key
    return origin.raw[-len(key) :]


def _record(data: dict[str, Any], names: Mapping[str, _Origin]) -> dict[KeyPath, _Origin]:
    """Where each key path of ``data`` came from: the variable named for it, or for its nearest parent (a JSON
    value such as ``MODALKIT_APP_SETTINGS='{...}'``)."""
    found: dict[KeyPath, _Origin] = {}

    def visit(value: Any, path: KeyPath) -> None:
        origin = names.get(_variable(path))
        if origin is not None:
            found[path] = _Origin(origin.file, origin.line)
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, (*path, key))

    for key, value in data.items():
        visit(value, (key,))
    return _spread(data, found)


def _spread(data: dict[str, Any], origins: dict[KeyPath, _Origin]) -> dict[KeyPath, _Origin]:
    """``origins`` with every key path inside ``data`` that has none given its nearest parent's."""

    def visit(value: Any, path: KeyPath) -> None:
        if path not in origins and path[:-1] in origins:
            origins[path] = origins[path[:-1]]
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, (*path, index))

    for key, value in data.items():
        visit(value, (key,))
    return origins


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
