"""The modalkit.yaml schema as pydantic models.

Every model forbids unknown keys and documents its fields with attribute docstrings, which flow into
the JSON Schema. Limits mirror Modal's own, so a bad file fails when it is read and not at deploy time.
"""

from __future__ import annotations

import contextvars
import difflib
import os
import posixpath
import re
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from modalkit_config._paths import KeyPath, format_key_path
from modalkit_config.errors import ConfigIssue, ModalkitDeprecationWarning

__all__ = [
    "DEPRECATED_KEYS",
    "AppSettings",
    "AuthConfig",
    "BatchConfig",
    "BuildConfig",
    "CloudBucketMount",
    "ConcurrencyConfig",
    "DeadLetterConfig",
    "DeploymentConfig",
    "KeyedValueError",
    "ModelSettings",
    "Mount",
    "ProxyAuthConfig",
    "QueueConfig",
    "RetryConfig",
    "SQSConfig",
    "ServerConfig",
    "Settings",
    "rename_deprecated_keys",
]

# Modal refuses to mount over these; catching it here saves a failed deploy.
_RESERVED_MOUNT_POINTS = frozenset({"/", "/root", "/tmp"})  # noqa: S108 - refused, not used
_APP_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_BACKEND_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_QUEUE_NAME_LENGTH = 80
"""The longest queue name accepted (SQS's own limit; Redis accepts longer keys, but one rule serves both)."""
QUEUE_NAME_PATTERN = rf"^([A-Za-z0-9_.:-]{{1,{MAX_QUEUE_NAME_LENGTH}}})?$"
"""`queue_name_problem`'s rule as a JSON Schema pattern, the empty name (no delivery) included."""
_QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Deprecated keys, by section: old key -> path of the new key inside the same section.
#: The loader renames them (with a warning naming the new key) before validation, so overlays that mix old
#: and new names merge as expected; the models rename them too when built directly from Python.
DEPRECATED_KEYS: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {
    ("app_settings", "deployment_config"): {
        "concurrency_limit": ("max_containers",),
        "container_idle_timeout": ("scaledown_window",),
        "keep_warm": ("min_containers",),
        "allow_concurrent_inputs": ("concurrency", "max_inputs"),
        "allow_concurrent_inputs_handler": ("handler_concurrency",),
    },
    ("app_settings", "auth_config"): {
        "auth_header": ("header",),
    },
}


class KeyedValueError(ValueError):
    """A validation error that belongs to one key of the model being checked.

    Model-level checks (``min_containers <= max_containers``) would otherwise be reported against the whole
    section; the loader reads ``key`` to point the message, and its line, at the offending key.
    """

    def __init__(self, key: str | KeyPath, message: str) -> None:
        super().__init__(message)
        self.key: KeyPath = (key,) if isinstance(key, str) else key


def rename_deprecated_keys(
    section: dict[str, Any], table: dict[str, tuple[str, ...]]
) -> tuple[dict[str, Any], list[tuple[str, tuple[str, ...]]], list[tuple[str, tuple[str, ...]]]]:
    """Rename deprecated keys of one section to their new names.

    Args:
        section: The section's raw mapping (not modified).
        table: Old key -> path of the new key, from :data:`DEPRECATED_KEYS`.

    Returns:
        The renamed copy, the ``(old, new_path)`` pairs that were renamed, and the ``(old, new_path)`` pairs
        that could not be renamed because the new key is also given (an error for the caller to report).
    """
    result = dict(section)
    renamed: list[tuple[str, tuple[str, ...]]] = []
    conflicts: list[tuple[str, tuple[str, ...]]] = []
    for old, new_path in table.items():
        if old not in result:
            continue
        if len(new_path) == 1:
            if new_path[0] in result:
                conflicts.append((old, new_path))
                continue
            result[new_path[0]] = result.pop(old)
        else:
            parent_key, leaf = new_path
            parent = result.get(parent_key)
            if parent is not None and (not isinstance(parent, dict) or leaf in parent):
                conflicts.append((old, new_path))
                continue
            result[parent_key] = {**(parent or {}), leaf: result.pop(old)}
        renamed.append((old, new_path))
    return result, renamed, conflicts


def _rename_or_raise(data: Any, section: tuple[str, ...]) -> Any:
    """Model-side handling of deprecated keys, for models built directly rather than through the loader."""
    if not isinstance(data, dict):
        return data
    renamed_data, renamed, conflicts = rename_deprecated_keys(data, DEPRECATED_KEYS[section])
    if conflicts:
        old, new_path = conflicts[0]
        raise KeyedValueError(old, f"'{old}' is the deprecated name of '{'.'.join(new_path)}'; give only one of them")
    for old, new_path in renamed:
        warnings.warn(
            f"{'.'.join(section)}.{old} is deprecated; use {'.'.join(section)}.{'.'.join(new_path)} instead",
            ModalkitDeprecationWarning,
            stacklevel=2,
        )
    return renamed_data


def _renamed_get(model: BaseModel, section: tuple[str, ...], name: str) -> tuple[bool, Any]:
    """Read a deprecated attribute name (``deployment_config.concurrency_limit``) as its new key, with a warning.

    Returns ``(False, None)`` when ``name`` is not a deprecated name of ``section``.
    """
    new_path = DEPRECATED_KEYS[section].get(name)
    if new_path is None:
        return False, None
    _warn_renamed_attribute(section, name, new_path)
    value: Any = model
    for part in new_path:
        value = getattr(value, part) if value is not None else None
    return True, value


def _renamed_set(model: BaseModel, section: tuple[str, ...], name: str, value: Any) -> bool:
    """Assign through a deprecated attribute name to its new key, with a warning; False when not deprecated."""
    new_path = DEPRECATED_KEYS[section].get(name)
    if new_path is None:
        return False
    _warn_renamed_attribute(section, name, new_path)
    if len(new_path) == 1:
        setattr(model, new_path[0], value)
        return True
    parent_key, leaf = new_path
    parent = getattr(model, parent_key)
    if parent is None:
        field_type = type(model).model_fields[parent_key].annotation
        parent_cls = next(t for t in getattr(field_type, "__args__", (field_type,)) if isinstance(t, type))
        setattr(model, parent_key, parent_cls(**{leaf: value}))
    else:
        setattr(parent, leaf, value)
    return True


def _warn_renamed_attribute(section: tuple[str, ...], old: str, new_path: tuple[str, ...]) -> None:
    warnings.warn(
        f"{'.'.join(section)}.{old} is deprecated; use {'.'.join(section)}.{'.'.join(new_path)} instead",
        ModalkitDeprecationWarning,
        stacklevel=3,
    )


def _deprecated_properties(section: tuple[str, ...], types: dict[str, JsonDict]) -> JsonDict:
    """JSON Schema entries for deprecated keys, so editors accept old files and flag the keys as deprecated."""
    properties: JsonDict = {}
    for old, new_path in DEPRECATED_KEYS[section].items():
        properties[old] = {
            **types[old],
            "deprecated": True,
            "description": f"Deprecated: use `{'.'.join(new_path)}` (the Modal 1.x name).",
        }
    return properties


def _check_mount_point(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"mount point must be an absolute path starting with '/' (got {value!r})")
    if _normalize_mount_point(value) in _RESERVED_MOUNT_POINTS:
        raise ValueError(f"mount point {value!r} is reserved by Modal: do not mount at '/', '/root' or '/tmp'")
    return value


def _normalize_mount_point(value: str) -> str:
    # normpath keeps a leading '//' (POSIX allows it a meaning); collapse it so '//root/' counts as '/root'.
    return "/" + posixpath.normpath(value).lstrip("/")


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        # Field names such as model_settings/model_entries are part of the earlier file format.
        protected_namespaces=(),
    )


class _RenamedAttributes(_Model):
    """A section with renamed keys: reading or assigning an old attribute name (``concurrency_limit``) reaches
    its new key, with a `ModalkitDeprecationWarning` (the old keys in files and arguments are renamed on input)."""

    _section: ClassVar[tuple[str, ...]]

    if not TYPE_CHECKING:  # type checkers flag the old names; at run time they still work

        def __getattr__(self, name: str) -> Any:
            found, value = _renamed_get(self, type(self)._section, name)
            return value if found else super().__getattr__(name)

        def __setattr__(self, name: str, value: Any) -> None:
            if not _renamed_set(self, type(self)._section, name, value):
                super().__setattr__(name, value)


class BuildConfig(_Model):
    """How the container image is built."""

    image: str | None = None
    """Registry image to start from, with its registry (e.g. `docker.io/library/python:3.11-slim`,
    `nvidia/cuda`); a name without a `/` is refused when the image is built; null builds on Modal's debian_slim."""
    tag: str = "latest"
    """Tag appended to `image` when it names neither a tag nor a digest (`...python:3.11-slim` is used as is)."""
    python_version: str | None = None
    """Python version for debian_slim or to add to a registry image (quote it in YAML: "3.11")."""
    workdir: str = "/root"
    """Working directory inside the container."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables set in the image (quote values such as "1.0" or "false" in YAML)."""
    extra_run_commands: str | list[str] = Field(default_factory=list)
    """Shell commands run while building the image: one string or a list."""
    pip_packages: list[str] = Field(default_factory=list)
    """Extra pip requirements installed in the image."""
    apt_packages: list[str] = Field(default_factory=list)
    """Extra Debian packages installed in the image."""

    @property
    def run_commands(self) -> list[str]:
        """``extra_run_commands`` as a list, whichever form the file used."""
        if isinstance(self.extra_run_commands, str):
            return [self.extra_run_commands] if self.extra_run_commands else []
        return list(self.extra_run_commands)


class ConcurrencyConfig(_Model):
    """Inputs one container handles at once (Modal's `@modal.concurrent`)."""

    max_inputs: int = Field(ge=1)
    """Hard limit of concurrent inputs per container."""
    target_inputs: int | None = Field(default=None, ge=1)
    """Concurrency the autoscaler aims for; at most `max_inputs`. Null means `max_inputs`."""

    @model_validator(mode="after")
    def _target_within_max(self) -> ConcurrencyConfig:
        if self.target_inputs is not None and self.target_inputs > self.max_inputs:
            raise KeyedValueError(
                "target_inputs",
                f"must be <= max_inputs ({self.max_inputs}) (got {self.target_inputs})",
            )
        return self


class CloudBucketMount(_Model):
    """A cloud bucket (S3, R2, GCS) mounted into the container."""

    mount_point: str
    """Absolute path inside the container; not `/`, `/root` or `/tmp`."""
    bucket_name: str
    """Name of the bucket."""
    bucket_endpoint_url: str | None = None
    """Endpoint for non-AWS buckets (Cloudflare R2, Google Cloud Storage)."""
    key_prefix: str | None = None
    """Mount only keys under this prefix; must end with `/`."""
    secret: str | None = None
    """Name of the Modal secret holding the bucket credentials."""
    oidc_auth_role_arn: str | None = None
    """AWS role to assume through OIDC instead of a secret."""
    read_only: bool = False
    """Mount read-only."""
    requester_pays: bool = False
    """Bill requests to the requester (S3 requester-pays buckets)."""

    @field_validator("mount_point")
    @classmethod
    def _mount_point_allowed(cls, value: str) -> str:
        return _check_mount_point(value)

    @field_validator("key_prefix")
    @classmethod
    def _prefix_ends_with_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith("/"):
            raise ValueError(f"key_prefix must end with '/' (got {value!r}; did you mean {value + '/'!r}?)")
        return value


class Mount(_Model):
    """A local file or directory added to the container image."""

    local_path: str
    """Path on the machine running the deploy; a relative path is relative to the YAML file that sets it
    (from an environment variable: to the working directory)."""
    remote_path: str
    """Absolute path inside the container."""
    type: Literal["file", "dir"] = "file"
    """Whether `local_path` is a single file or a directory."""

    @field_validator("remote_path")
    @classmethod
    def _remote_path_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"remote_path must be an absolute path starting with '/' (got {value!r})")
        return value


_PositiveFloat = Annotated[float, Field(gt=0)]
_PositiveInt = Annotated[int, Field(gt=0)]


def _deployment_schema_extra(schema: JsonDict) -> None:
    properties = schema.setdefault("properties", {})
    assert isinstance(properties, dict)
    integer: JsonDict = {"type": "integer"}
    properties.update(
        _deprecated_properties(
            ("app_settings", "deployment_config"),
            {
                "concurrency_limit": integer,
                "container_idle_timeout": integer,
                "keep_warm": integer,
                "allow_concurrent_inputs": integer,
                "allow_concurrent_inputs_handler": integer,
            },
        )
    )


class DeploymentConfig(_RenamedAttributes):
    """How the service runs on Modal: resources, scaling, storage, secrets.

    The names are Modal 1.x's. The names Modal removed are still read, with a warning naming the new key:
    `concurrency_limit` -> `max_containers`, `container_idle_timeout` -> `scaledown_window`,
    `keep_warm` -> `min_containers`, `allow_concurrent_inputs` -> `concurrency.max_inputs`,
    `allow_concurrent_inputs_handler` -> `handler_concurrency`.
    """

    model_config = ConfigDict(json_schema_extra=_deployment_schema_extra)
    _section: ClassVar[tuple[str, ...]] = ("app_settings", "deployment_config")

    gpu: str | Annotated[list[str], Field(min_length=1)] | None = None
    """GPU type (`T4`, `A10G`, `A100`, `H100`, `L4`, ... with an optional `:count`), or a list in order of
    preference; null for CPU only."""
    cpu: _PositiveFloat | tuple[_PositiveFloat, _PositiveFloat] | None = None
    """CPU cores reserved, or a `[request, limit]` pair."""
    memory: _PositiveInt | tuple[_PositiveInt, _PositiveInt] | None = None
    """Memory in MiB reserved, or a `[request, limit]` pair."""
    timeout: int = Field(default=300, ge=1, le=86400)
    """Seconds one call may run before Modal stops it (1..86400)."""
    retries: int | None = Field(default=None, ge=0, le=10)
    """Times Modal retries a failed call (0..10); null for Modal's default."""
    region: str | Annotated[list[str], Field(min_length=1)] | None = None
    """Region (or list of regions) the containers may run in."""
    cloud: str | None = None
    """Cloud provider (`aws`, `gcp`, `oci`, `auto`)."""
    min_containers: int | None = Field(default=None, ge=0)
    """Containers kept running even when idle (was `keep_warm`)."""
    max_containers: int | None = Field(default=None, ge=1)
    """Upper bound on running containers (was `concurrency_limit`)."""
    buffer_containers: int | None = Field(default=None, ge=0)
    """Extra idle containers kept ready while the service is busy."""
    scaledown_window: int | None = Field(default=None, ge=2, le=3600)
    """Seconds an idle container stays up before it is stopped (2..3600; was `container_idle_timeout`)."""
    handler_min_containers: int | None = Field(default=None, ge=0)
    """`min_containers` of the web function; null takes the inference class's `min_containers`."""
    handler_max_containers: int | None = Field(default=None, ge=1)
    """`max_containers` of the web function; null takes the inference class's `max_containers`."""
    handler_buffer_containers: int | None = Field(default=None, ge=0)
    """`buffer_containers` of the web function; null takes the inference class's `buffer_containers`."""
    handler_scaledown_window: int | None = Field(default=None, ge=2, le=3600)
    """`scaledown_window` of the web function (2..3600); null takes the inference class's `scaledown_window`."""
    ephemeral_disk: int | None = Field(default=None, ge=1, le=3 * 1024 * 1024)
    """Ephemeral disk of an inference container in MiB (up to 3 TiB); null for Modal's default."""
    startup_timeout: int | None = Field(default=None, ge=1, le=86400)
    """Seconds a container may take to start (model load in `@modal.enter`), 1..86400; null uses `timeout`."""
    nonpreemptible: bool = False
    """Run the inference class on nonpreemptible instances (costs more; no restarts by preemption)."""
    single_use_containers: bool = False
    """Stop each inference container after one input (isolation at the price of a cold start per call)."""
    block_network: bool = False
    """Block network access of the inference class (the web function keeps its network to call it)."""
    concurrency: ConcurrencyConfig | None = None
    """Inputs one inference container handles at once (was `allow_concurrent_inputs`); null for one at a time."""
    handler_concurrency: int = Field(default=100, ge=1)
    """Concurrent requests one web-endpoint container accepts (was `allow_concurrent_inputs_handler`)."""
    enable_memory_snapshot: bool = False
    """Snapshot the container after start-up so later cold starts are faster."""
    volumes: dict[str, str] = Field(default_factory=dict)
    """Modal volumes to mount: absolute mount point -> volume name."""
    volume_reload_interval_seconds: int | None = Field(default=None, ge=1)
    """Reload the volumes at most this often (seconds, >= 1) before a batch; null or absent means never.
    The earlier modalkit's default of -1 reloaded every volume before every batch; that value is now refused."""
    cloud_bucket_mounts: list[CloudBucketMount] = Field(default_factory=list)
    """Cloud buckets to mount."""
    secrets: list[str] = Field(default_factory=list)
    """Names of Modal secrets whose values become environment variables."""
    mounts: list[Mount] = Field(default_factory=list)
    """Local files or directories added to the image."""
    secure: bool = False
    """Require Modal proxy auth (`Modal-Key`/`Modal-Secret` headers) on the web endpoint; locally the same
    headers are checked against `app_settings.proxy_auth`."""

    @model_validator(mode="before")
    @classmethod
    def _accept_deprecated_keys(cls, data: Any) -> Any:
        return _rename_or_raise(data, ("app_settings", "deployment_config"))

    @field_validator("volumes", mode="before")
    @classmethod
    def _null_volumes(cls, value: Any) -> Any:
        # The earlier schema allowed `volumes: null`; keep reading such files.
        return {} if value is None else value

    @field_validator("volumes")
    @classmethod
    def _volume_mount_points(cls, value: dict[str, str]) -> dict[str, str]:
        for mount_point in value:
            try:
                _check_mount_point(mount_point)
            except ValueError as exc:
                raise KeyedValueError((mount_point,), str(exc)) from None
        return value

    @field_validator("volume_reload_interval_seconds", mode="before")
    @classmethod
    def _reload_interval(cls, value: Any) -> Any:
        # Runs before the ge=1 check so that -1, the earlier default, gets an explanation.
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError(
                f"must be >= 1 second or null (got {value}); the earlier -1 meant 'reload before every batch': "
                "remove the key to never reload, or give an interval in seconds"
            )
        return value

    @field_validator("cpu", "memory")
    @classmethod
    def _request_within_limit(cls, value: Any) -> Any:
        if isinstance(value, tuple) and value[0] > value[1]:
            raise ValueError(f"the request must be <= the limit in [request, limit] (got [{value[0]}, {value[1]}])")
        return value

    @model_validator(mode="after")
    def _min_within_max(self) -> DeploymentConfig:
        low, high = self.min_containers, self.max_containers
        if low is not None and high is not None and low > high:
            raise KeyedValueError("min_containers", f"must be <= max_containers ({high}) (got {low})")
        return self

    @model_validator(mode="after")
    def _handler_min_within_max(self) -> DeploymentConfig:
        # The web function's pair as Modal receives it: each handler key falls back to the class's key.
        low, low_from = _own_or_inherited(self.handler_min_containers, self.min_containers, "min_containers")
        high, high_from = _own_or_inherited(self.handler_max_containers, self.max_containers, "max_containers")
        if low is None or high is None or low <= high:
            return self
        if self.handler_min_containers is not None:
            raise KeyedValueError(
                "handler_min_containers", f"must be <= handler_max_containers ({high}{high_from}) (got {low})"
            )
        raise KeyedValueError(
            "handler_max_containers", f"must be >= handler_min_containers ({low}{low_from}) (got {high})"
        )

    @model_validator(mode="after")
    def _distinct_mount_points(self) -> DeploymentConfig:
        seen: dict[str, KeyPath] = {}
        points: list[tuple[KeyPath, str]] = [(("volumes", p), p) for p in self.volumes]
        points += [
            (("cloud_bucket_mounts", i, "mount_point"), m.mount_point) for i, m in enumerate(self.cloud_bucket_mounts)
        ]
        for key, point in points:
            normalized = _normalize_mount_point(point)
            if normalized in seen:
                raise KeyedValueError(
                    key, f"mount point {point!r} is already used by {format_key_path(seen[normalized])}"
                )
            seen[normalized] = key
        return self


def _own_or_inherited(own: int | None, inherited: int | None, inherited_key: str) -> tuple[int | None, str]:
    """A handler key's effective value, and where it came from when it was inherited (for messages)."""
    if own is not None or inherited is None:
        return own, ""
    return inherited, f", from {inherited_key}"


class BatchConfig(_Model):
    """Dynamic batching (Modal's `@modal.batched`; the local batcher follows the same rules)."""

    max_batch_size: int = Field(default=1, ge=1, le=1000)
    """Most inputs combined into one batch (1..1000)."""
    wait_ms: int = Field(default=0, ge=0, le=600000)
    """Milliseconds to wait for more inputs after the first one arrives (0..600000)."""


class SQSConfig(_Model):
    """Amazon SQS settings for the `sqs` queue backend."""

    region_name: str | None = None
    """AWS region; null uses the AWS SDK's usual lookup (AWS_REGION, profile)."""
    endpoint_url: str | None = None
    """Custom endpoint (e.g. a local moto or LocalStack); null uses AWS."""
    create_missing: bool = False
    """Create a queue that does not exist. Off by default so a typo in a queue name fails loudly."""
    fifo: bool | None = None
    """Treat queues as FIFO; null decides from the name (a `.fifo` suffix)."""
    message_group_id: str = Field(default="modalkit", min_length=1, max_length=128)
    """MessageGroupId for FIFO queues."""


class RetryConfig(_Model):
    """Retries with exponential backoff and jitter for result delivery."""

    max_attempts: int = Field(default=100, ge=1, le=100)
    """Most delivery attempts before a message goes to the dead letter (1..100); with the default backoff,
    `max_elapsed_seconds` runs out first."""
    initial_backoff_seconds: float = Field(default=0.2, ge=0)
    """Wait before the first retry; doubled after each failure."""
    max_backoff_seconds: float = Field(default=10.0, ge=0)
    """Upper bound on the wait between retries."""
    jitter: bool = True
    """Randomize each wait (full jitter) so many senders do not retry in lockstep."""
    max_elapsed_seconds: float | None = Field(default=120, ge=0)
    """Most seconds a message is retried for, from when it was handed to the sender; then the dead letter,
    whatever attempts are left. The default rides out a minute-long queue outage. Null: attempts alone."""

    @model_validator(mode="after")
    def _initial_within_max(self) -> RetryConfig:
        if self.initial_backoff_seconds > self.max_backoff_seconds:
            raise KeyedValueError(
                "initial_backoff_seconds",
                f"must be <= max_backoff_seconds ({self.max_backoff_seconds}) (got {self.initial_backoff_seconds})",
            )
        return self


class DeadLetterConfig(_Model):
    """Where a result goes when every delivery attempt failed."""

    queue: str | None = None
    """Dead-letter queue name on the configured backend; null means the local file only."""
    file: str = "modalkit-dead-letters.jsonl"
    """JSON-lines file used when no dead-letter queue is set or it is unreachable."""

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str | None) -> str | None:
        return None if value is None else _checked_queue_name(value)


def queue_name_problem(name: str) -> str | None:
    """What is wrong with a queue name, or None when every backend can take it.

    A name is 1 to `MAX_QUEUE_NAME_LENGTH` characters of ASCII letters, digits, ``_``, ``-``, ``.`` and ``:``
    (what SQS queue names and Redis keys have in common, with ``.fifo`` and ``app:results`` styles kept).
    The message never repeats the name, which may be long or hostile.
    """
    if not name:
        return "a queue name cannot be empty"
    if len(name) > MAX_QUEUE_NAME_LENGTH:
        return f"a queue name is at most {MAX_QUEUE_NAME_LENGTH} characters (got {len(name)})"
    if _QUEUE_NAME_RE.fullmatch(name) is None:
        return "a queue name may hold only ASCII letters, digits, '_', '-', '.' and ':'"
    return None


def _checked_queue_name(value: str) -> str:
    problem = queue_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class QueueConfig(_Model):
    """Where async results are delivered, and how reliably."""

    backend: str = "memory"
    """Queue backend: `memory`, `sqs`, `taskiq`, or the name of a backend you registered.
    (The earlier modalkit defaulted to `sqs`.)"""
    broker_url: str = "memory://"
    """Broker URL for taskiq (`redis://host:6379`, or `memory://` for development)."""
    sqs: SQSConfig = Field(default_factory=SQSConfig)
    """Settings for the `sqs` backend."""
    retry: RetryConfig = Field(default_factory=RetryConfig)
    """Delivery retries."""
    outbox_size: int = Field(default=10000, ge=1)
    """Most results waiting for delivery in memory; beyond it new async requests get 503."""
    dead_letter: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    """Where undeliverable results go."""
    allowed_queues: list[Annotated[str, AfterValidator(_checked_queue_name)]] | None = None
    """The only queue names an async request may name as its `success_queue`/`failure_queue` (others get 422);
    null allows any valid name. Queues named here are also the only ones with their own metric label."""

    @field_validator("backend")
    @classmethod
    def _backend_name(cls, value: str) -> str:
        if not _BACKEND_RE.match(value):
            raise ValueError(
                f"expected a backend name such as 'memory', 'sqs', 'taskiq' or a registered name (got {value!r})"
            )
        # The caller may say which backends are registered (modalkit-config does not import modalkit-queue).
        # A name unlike all of them may still be registered by the app file, so only a near miss is an error.
        known = known_queue_backends.get()
        if known is not None and value not in known:
            close = difflib.get_close_matches(value, sorted(known), n=1)
            if close:
                raise ValueError(f"unknown queue backend {value!r}; did you mean {close[0]!r}?")
        return value


def _auth_schema_extra(schema: JsonDict) -> None:
    properties = schema.setdefault("properties", {})
    assert isinstance(properties, dict)
    properties.update(_deprecated_properties(("app_settings", "auth_config"), {"auth_header": {"type": "string"}}))


class AuthConfig(_RenamedAttributes):
    """API-key auth for the predict and job routes. Give exactly one key source:
    `api_key`, `api_key_env` or `ssm_key`."""

    model_config = ConfigDict(json_schema_extra=_auth_schema_extra)
    _section: ClassVar[tuple[str, ...]] = ("app_settings", "auth_config")

    header: str = "x-api-key"
    """Request header carrying the key (was `auth_header`)."""
    api_key: str | Annotated[list[str], Field(min_length=1)] | None = Field(default=None, repr=False)
    """The key itself, or several valid keys: for development only, never commit real keys."""
    api_key_env: str | None = None
    """Environment variable holding the key (several keys may be given comma-separated)."""
    ssm_key: str | None = None
    """AWS SSM parameter name holding the key (a SecureString, read with decryption)."""
    ssm_region: str | None = None
    """AWS region of the SSM parameter; null uses the AWS SDK's usual lookup."""
    ssm_endpoint_url: str | None = None
    """Custom SSM endpoint (e.g. a local moto); null uses AWS."""
    cache_ttl_seconds: float = Field(default=300, gt=0)
    """How long a key read from SSM is cached before it is fetched again."""
    grace_period_seconds: float = Field(default=3600, ge=0)
    """How long the previous key keeps working after a rotation."""
    protect_metrics: bool = False
    """Also require the key on `/metrics`."""
    protect_docs: bool = False
    """Also require the key on `/openapi.json`, `/docs` and `/redoc` (a browser then cannot open `/docs`)."""
    max_key_length: int = Field(default=4096, ge=1)
    """Longer presented keys are refused without being compared."""

    @model_validator(mode="before")
    @classmethod
    def _accept_deprecated_keys(cls, data: Any) -> Any:
        return _rename_or_raise(data, ("app_settings", "auth_config"))

    @field_validator("header")
    @classmethod
    def _header_token(cls, value: str) -> str:
        if not _HEADER_RE.match(value):
            raise ValueError(f"expected an HTTP header name such as 'x-api-key' (got {value!r})")
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> AuthConfig:
        given = [name for name in ("api_key", "api_key_env", "ssm_key") if getattr(self, name) is not None]
        if len(given) != 1:
            which = f"{', '.join(given)} are set" if given else "none is set"
            raise ValueError(
                f"give exactly one key source: api_key, api_key_env or ssm_key ({which}); "
                "remove auth_config entirely to serve without API-key auth"
            )
        return self


class ProxyAuthConfig(_Model):
    """Local equivalent of Modal proxy auth, used when `deployment_config.secure` is true: the service requires
    `Modal-Key` and `Modal-Secret` headers matching these environment variables."""

    key_env: str = "MODAL_PROXY_KEY"
    """Environment variable holding the expected `Modal-Key`."""
    secret_env: str = "MODAL_PROXY_SECRET"  # noqa: S105 - a variable name, not a secret
    """Environment variable holding the expected `Modal-Secret`."""


class ServerConfig(_Model):
    """Local serving and request limits (the limits apply on Modal too)."""

    host: str = "127.0.0.1"
    """Interface `modalkit serve` binds to."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Port `modalkit serve` listens on (0 picks a free one)."""
    max_queue_size: int = Field(default=1024, ge=1)
    """Most requests waiting for a batch; beyond it requests get 503 with Retry-After."""
    request_timeout_seconds: float = Field(default=60, gt=0)
    """A request still unanswered after this gets 504."""
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    """Largest request body accepted; larger ones get 413."""
    max_file_bytes: int = Field(default=1_048_576, ge=1)
    """Largest file in a multipart/form-data upload; a larger one gets 413 as soon as it is seen (the body as a
    whole is still bounded by max_body_bytes)."""
    max_batch_items: int = Field(default=256, ge=1)
    """Most items in one `/predict_batch` request."""
    max_json_depth: int = Field(default=32, ge=1)
    """Deepest JSON nesting accepted in a request body."""
    job_ttl_seconds: float = Field(default=3600, gt=0)
    """How long a finished async job's status stays readable at `/jobs/{job_id}`."""
    max_jobs: int = Field(default=100_000, ge=1)
    """Most job statuses kept; the oldest finished ones are dropped first."""
    log_level: str = "INFO"
    """Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    max_header_bytes: int = Field(default=32768, ge=1024)
    """Largest request header block (request line included); larger ones get 431 and the connection is closed."""
    header_timeout_seconds: float = Field(default=10, gt=0)
    """A connection must finish sending a request's headers this long after it opened or began the request;
    otherwise 408 and closed (slow-header attacks, connections that never speak)."""
    keep_alive_timeout_seconds: float = Field(default=5, gt=0)
    """An idle keep-alive connection is closed after this long without a new request."""
    max_connections: int = Field(default=1000, ge=1)
    """Most open client connections; beyond them a new one gets 503 and is closed (lowered to what the
    file-descriptor limit allows, so descriptors never run out)."""
    drain_timeout_seconds: float = Field(default=30, ge=0)
    """On shutdown, how long to wait for in-flight batches and pending deliveries."""
    journal_path: str | None = None
    """SQLite file (WAL mode) where `modalkit serve` records every accepted async job before answering 202,
    and each state change until delivery; ``null`` keeps jobs in memory only (lost on a crash). ``":memory:"``
    is an in-memory SQLite journal. A relative path is relative to the YAML file that sets it (from an
    environment variable: to the working directory), so ``.modalkit/jobs.sqlite`` in the modalkit.yaml beside
    the app puts the journal beside the app whatever the working directory; missing folders are created. Two
    servers cannot share one file (the second refuses to start)."""
    journal_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """Journal durability (SQLite's ``synchronous``): ``NORMAL`` keeps every committed job through a process
    crash (kill -9, an OOM kill), since the commit is in the operating system's cache; a power loss or kernel
    crash can lose the last commits. ``FULL`` also keeps them through a power loss, at the price of an fsync
    per group commit."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)} (got {value!r})")
        return level


class AppSettings(_Model):
    """The service: naming, image, deployment, batching, queues, auth, serving limits."""

    app_prefix: str = Field(min_length=1, max_length=64)
    """Prefix of the Modal app name (letters, digits, `.`, `_`, `-`)."""
    build_config: BuildConfig = Field(default_factory=BuildConfig)
    """Container image."""
    deployment_config: DeploymentConfig = Field(default_factory=DeploymentConfig)
    """Resources, scaling, storage and secrets on Modal."""
    batch_config: BatchConfig = Field(default_factory=BatchConfig)
    """Dynamic batching."""
    queue_config: QueueConfig = Field(default_factory=QueueConfig)
    """Async result delivery."""
    auth_config: AuthConfig | None = None
    """API-key auth; absent or null serves without API keys."""
    proxy_auth: ProxyAuthConfig = Field(default_factory=ProxyAuthConfig)
    """Local Modal proxy auth, used when `deployment_config.secure` is true."""
    server_config: ServerConfig = Field(default_factory=ServerConfig)
    """Local serving and request limits."""

    @field_validator("app_prefix")
    @classmethod
    def _app_name_chars(cls, value: str) -> str:
        if not _APP_PREFIX_RE.match(value):
            raise ValueError(f"may contain only letters, digits, '.', '_' and '-' (got {value!r})")
        return value


class ModelSettings(_Model):
    """The models served and the keyword arguments each pipeline is built with."""

    local_model_repository_folder: str = "."
    """Folder holding the model files, passed to pipelines as `all_model_data_folder`. A relative path is
    relative to the YAML file that sets it (from an environment variable: to the working directory)."""
    common: dict[str, Any] = Field(default_factory=dict)
    """Settings shared by every model (passed to pipelines as `common_settings`)."""
    model_entries: dict[str, dict[str, Any]]
    """Model name -> keyword arguments for its pipeline. May be empty in a file that other files overlay; a
    service needs at least one entry to serve."""

    @field_validator("local_model_repository_folder", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value


class Settings(BaseSettings):
    """A whole modalkit.yaml."""

    # A pydantic-settings BaseSettings: Settings() reads what load_settings() reads. Sources, earlier ones
    # winning: arguments, MODALKIT_ environment variables (__ between keys), .env (_env_file=), a secrets
    # directory (_secrets_dir=), then the YAML files (YamlConfigSource); settings_customise_sources changes
    # that. Settings.model_validate(data) validates data alone, reading no source. (A comment, not the
    # docstring, which is the schema's description.)

    model_config = SettingsConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        protected_namespaces=(),
        env_prefix="MODALKIT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        validate_default=False,
    )

    app_settings: AppSettings
    """The service."""
    model_settings: ModelSettings
    """The models."""

    def __init__(self, **values: Any) -> None:
        from modalkit_config._loader import LoadOptions, _Build, current_build, load_options

        if _data_only.get():
            super().__init__(**values)  # model_validate: the data alone, pydantic's own error
            return
        options = load_options.get(LoadOptions())
        complete = "app_settings" in values and "model_settings" in values
        build = _Build(options=options, complete_arguments=complete)
        token = current_build.set(build)
        backends = known_queue_backends.set(options.queue_backends)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            build.warn()
            raise build.error(exc, _last_input.get() or {}) from None
        finally:
            known_queue_backends.reset(backends)
            current_build.reset(token)
        build.warn()
        if build.issues:
            raise build.error(None, {})
        self.keep_origins({path: (o.file, o.line) for path, o in build.origins().items()}, build.fallback_file)

    _origins: dict[KeyPath, tuple[str | None, int | None]] = PrivateAttr(default_factory=dict)
    _source: str | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # Where each key was set is not part of the value: a file's settings equal the same settings from a dict.
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def keep_origins(self, origins: Mapping[KeyPath, tuple[str | None, int | None]], source: str | None) -> None:
        """Remember where each key path was set (file or variable, line), for `issue_at`; the loader calls it."""
        self._origins = dict(origins)
        self._source = source

    def issue_at(self, path: Sequence[str | int], message: str) -> ConfigIssue:
        """A problem about ``path`` found after loading, placed where it (or its nearest parent) was set.

        For checks only the caller can make (a pipeline's declared entry arguments): the message then reads like
        the loader's own, ``file:line: key.path: message``.
        """
        key_path = tuple(path)
        for end in range(len(key_path), 0, -1):
            origin = self._origins.get(key_path[:end])
            if origin is not None:
                return ConfigIssue(origin[0], format_key_path(key_path), origin[1], message)
        return ConfigIssue(self._source, format_key_path(key_path), None, message)

    @model_validator(mode="before")
    @classmethod
    def _remember_input(cls, data: Any) -> Any:
        # What is about to be validated (every source merged), for the error messages: pydantic's public hook,
        # not pydantic-settings' internal build step.
        _last_input.set(data if isinstance(data, dict) else None)
        return data

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """Validate ``obj`` alone: no environment, ``.env``, secrets or YAML file is read."""
        token = _data_only.set(True)
        try:
            return super().model_validate(obj, **kwargs)
        finally:
            _data_only.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        from pydantic_settings import EnvSettingsSource, SecretsSettingsSource

        from modalkit_config._loader import LoadOptions, load_options
        from modalkit_config._sources import MatchedEnvSource, SecretsOrigins, YamlConfigSource

        if _data_only.get():
            return (init_settings,)
        options = load_options.get(LoadOptions())
        yaml = YamlConfigSource(settings_cls, options.paths)
        env = MatchedEnvSource(env_settings, yaml, options.env) if isinstance(env_settings, EnvSettingsSource) else None
        dotenv = MatchedEnvSource(dotenv_settings, yaml) if isinstance(dotenv_settings, EnvSettingsSource) else None
        secrets = file_secret_settings
        if isinstance(secrets, SecretsSettingsSource):
            secrets = SecretsOrigins(secrets)
        # MODALKIT_CONFIG may come from the environment or from .env, as the settings do.
        yaml.variables = lambda: [s.source.env_vars for s in (env, dotenv) if s is not None]
        return (init_settings, env or env_settings, dotenv or dotenv_settings, secrets, yaml)


known_queue_backends: contextvars.ContextVar[Collection[str] | None] = contextvars.ContextVar(
    "modalkit_queue_backends", default=None
)
"""The registered queue backend names while the loader validates, when its caller gave them."""
_data_only: contextvars.ContextVar[bool] = contextvars.ContextVar("modalkit_data_only", default=False)
_last_input: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("modalkit_input", default=None)
