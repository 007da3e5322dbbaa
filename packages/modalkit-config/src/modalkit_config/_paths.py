"""Key paths: how a location inside the configuration is written in messages."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["KeyPath", "format_key_path"]

KeyPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_key_path(parts: Iterable[str | int]) -> str:
    """Write a key path the way users read it.

    Keys that look like names are joined with dots, list indices go in brackets and any other key
    (a mount point such as ``/mnt/data``) is quoted in brackets::

        app_settings.deployment_config.volumes["/mnt/data"]
        app_settings.deployment_config.cloud_bucket_mounts[0].key_prefix
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out
