"""``from modalkit.settings import ...``: the configuration models and loader (from modalkit-config).

``Settings()`` reads ``modalkit.yaml`` (or the files ``MODALKIT_CONFIG`` lists) and ``MODALKIT_`` environment
variables, as the earlier one did. `MountType` and `Volume` are the earlier modalkit's names: ``Mount.type``
takes ``MountType.FILE``/``MountType.DIR`` (or ``"file"``/``"dir"``); volumes are configured as the mapping
``deployment_config.volumes: {mount_point: volume_name}``, which `Volume` describes one entry of.
"""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

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


class MountType(StrEnum):
    """What a `Mount` adds to the image: one file or a whole folder."""

    FILE = "file"
    DIR = "dir"


class Volume(BaseModel):
    """One Modal volume: the earlier modalkit's model of a ``deployment_config.volumes`` entry."""

    model_config = ConfigDict(extra="forbid")

    mount_point: str
    """Where the volume appears in the container."""
    volume_name: str
    """The Modal volume's name."""

    def as_entry(self) -> dict[str, str]:
        """This volume as a ``deployment_config.volumes`` mapping entry."""
        return {self.mount_point: self.volume_name}


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
    "MountType",
    "ProxyAuthConfig",
    "QueueConfig",
    "RetryConfig",
    "SQSConfig",
    "ServerConfig",
    "Settings",
    "Volume",
    "load_settings",
    "settings_from_dict",
]
