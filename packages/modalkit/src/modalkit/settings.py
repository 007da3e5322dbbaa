"""``from modalkit.settings import ...``: the configuration models and loader (from modalkit-config).

The earlier ``Settings()`` read modalkit.yaml when constructed; call :func:`load_settings` for that now.
"""

from modalkit_config import (
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
    load_settings,
    settings_from_dict,
)

__all__ = [
    "AppSettings",
    "AuthConfig",
    "BatchConfig",
    "BuildConfig",
    "CloudBucketMount",
    "ConcurrencyConfig",
    "DeadLetterConfig",
    "DeploymentConfig",
    "ModelSettings",
    "Mount",
    "ProxyAuthConfig",
    "QueueConfig",
    "RetryConfig",
    "SQSConfig",
    "ServerConfig",
    "Settings",
    "load_settings",
    "settings_from_dict",
]
