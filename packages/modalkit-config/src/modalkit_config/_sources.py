"""The YAML files as a pydantic-settings source, so `Settings()` reads what `load_settings()` reads."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from modalkit_config._loader import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_FILE,
    StrPath,
    _Build,
    _read_variables,
    merged_files,
)

# The origins of the last YAML read in this context, for the error `Settings.__init__` raises.
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

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the whole merged document at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if (
            complete_arguments.get()
            and self.paths is None
            and CONFIG_ENV_VAR not in _read_variables(os.environ, None)
            and not Path(DEFAULT_CONFIG_FILE).is_file()
        ):
            return {}
        build = merged_files(self.paths)
        last_build.set(build)
        return build.data
