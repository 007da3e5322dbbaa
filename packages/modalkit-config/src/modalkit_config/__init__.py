"""modalkit-config: the modalkit.yaml schema, its loader, its JSON Schema and a validator CLI.

Nothing is read at import time: call :func:`load_settings` (files, ``MODALKIT_`` environment variables,
``.env``), ``Settings()`` (the same, as a pydantic-settings ``BaseSettings``) or :func:`settings_from_dict`.
"""

from importlib.metadata import version as _version

from modalkit_config._loader import config_files, load_settings, settings_from_dict
from modalkit_config._models import (
    MAX_QUEUE_NAME_LENGTH,
    QUEUE_NAME_PATTERN,
    AppSettings,
    AuthConfig,
    BatchConfig,
    BuildConfig,
    CloudBucketMount,
    ConcurrencyConfig,
    DeadLetterConfig,
    DeploymentConfig,
    ModelSettings,
    Mount,
    ProxyAuthConfig,
    QueueConfig,
    RetryConfig,
    ServerConfig,
    Settings,
    SQSConfig,
    queue_name_problem,
)
from modalkit_config._schema import json_schema
from modalkit_config._sources import YamlConfigSource
from modalkit_config.errors import (
    ConfigError,
    ConfigFileNotFoundError,
    ConfigIssue,
    ConfigSyntaxError,
    ConfigValidationError,
    ModalkitDeprecationWarning,
)

__version__ = _version("modalkit-config")

__all__ = [
    "MAX_QUEUE_NAME_LENGTH",
    "QUEUE_NAME_PATTERN",
    "AppSettings",
    "AuthConfig",
    "BatchConfig",
    "BuildConfig",
    "CloudBucketMount",
    "ConcurrencyConfig",
    "ConfigError",
    "ConfigFileNotFoundError",
    "ConfigIssue",
    "ConfigSyntaxError",
    "ConfigValidationError",
    "DeadLetterConfig",
    "DeploymentConfig",
    "ModalkitDeprecationWarning",
    "ModelSettings",
    "Mount",
    "ProxyAuthConfig",
    "QueueConfig",
    "RetryConfig",
    "SQSConfig",
    "ServerConfig",
    "Settings",
    "YamlConfigSource",
    "__version__",
    "config_files",
    "json_schema",
    "load_settings",
    "queue_name_problem",
    "settings_from_dict",
]
