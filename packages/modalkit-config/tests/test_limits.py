"""Every limit of the schema, accepted at its boundary and rejected just past it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modalkit_config import ConfigValidationError, Settings, settings_from_dict

BASE: dict[str, Any] = {
    "app_settings": {"app_prefix": "demo"},
    "model_settings": {"model_entries": {"m": {}}},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted `path` (relative to the root) set to `value`, creating sections on the way."""
    data = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


def _single_issue(data: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ConfigValidationError) as info:
        settings_from_dict(data)
    issues = info.value.issues
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0].key_path, issues[0].message


A = "app_settings"
D = "app_settings.deployment_config"

# (path, accepted boundary values, rejected value, expected message)
RANGES: list[tuple[str, list[Any], Any, str]] = [
    (f"{A}.batch_config.max_batch_size", [1, 1000], 0, "must be >= 1 (got 0)"),
    (f"{A}.batch_config.max_batch_size", [1000], 1001, "must be <= 1000 (got 1001)"),
    (f"{A}.batch_config.wait_ms", [0, 600000], -1, "must be >= 0 (got -1)"),
    (f"{A}.batch_config.wait_ms", [600000], 600001, "must be <= 600000 (got 600001)"),
    (f"{D}.timeout", [1, 86400], 0, "must be >= 1 (got 0)"),
    (f"{D}.timeout", [86400], 86401, "must be <= 86400 (got 86401)"),
    (f"{D}.retries", [0, 10], -1, "must be >= 0 (got -1)"),
    (f"{D}.retries", [10], 11, "must be <= 10 (got 11)"),
    (f"{D}.min_containers", [0], -1, "must be >= 0 (got -1)"),
    (f"{D}.max_containers", [1], 0, "must be >= 1 (got 0)"),
    (f"{D}.buffer_containers", [0], -1, "must be >= 0 (got -1)"),
    (f"{D}.scaledown_window", [2, 3600], 1, "must be >= 2 (got 1)"),
    (f"{D}.scaledown_window", [3600], 3601, "must be <= 3600 (got 3601)"),
    (f"{D}.handler_concurrency", [1], 0, "must be >= 1 (got 0)"),
    (f"{D}.concurrency.max_inputs", [1], 0, "must be >= 1 (got 0)"),
    (f"{D}.cpu", [0.125, [0.5, 0.5]], 0, "must be > 0 (got 0)"),
    (f"{D}.memory", [1, [128, 128]], 0, "must be > 0 (got 0)"),
    (f"{A}.queue_config.retry.max_attempts", [1, 100], 0, "must be >= 1 (got 0)"),
    (f"{A}.queue_config.retry.max_attempts", [100], 101, "must be <= 100 (got 101)"),
    (f"{A}.queue_config.retry.initial_backoff_seconds", [0], -0.5, "must be >= 0 (got -0.5)"),
    (f"{A}.queue_config.outbox_size", [1], 0, "must be >= 1 (got 0)"),
    (f"{A}.queue_config.sqs.message_group_id", ["g", "g" * 128], "g" * 129, "must be at most 128 characters (got 129)"),
    (f"{A}.auth_config.max_key_length", [1], 0, "must be >= 1 (got 0)"),
    (f"{A}.auth_config.cache_ttl_seconds", [0.001], 0, "must be > 0 (got 0)"),
    (f"{A}.auth_config.grace_period_seconds", [0], -1, "must be >= 0 (got -1)"),
    (f"{A}.server_config.port", [0, 65535], 65536, "must be <= 65535 (got 65536)"),
    (f"{A}.server_config.port", [0], -1, "must be >= 0 (got -1)"),
    (f"{A}.server_config.max_queue_size", [1], 0, "must be >= 1 (got 0)"),
    (f"{A}.server_config.request_timeout_seconds", [0.01], 0, "must be > 0 (got 0)"),
    (f"{A}.server_config.max_body_bytes", [1], 0, "must be >= 1 (got 0)"),
    (f"{A}.server_config.max_batch_items", [1], 0, "must be >= 1 (got 0)"),
    (f"{A}.server_config.max_json_depth", [1], 0, "must be >= 1 (got 0)"),
    (f"{A}.server_config.job_ttl_seconds", [0.5], 0, "must be > 0 (got 0)"),
    (f"{A}.server_config.max_jobs", [1], 0, "must be >= 1 (got 0)"),
    (f"{A}.server_config.drain_timeout_seconds", [0], -1, "must be >= 0 (got -1)"),
]


def _needs(path: str) -> dict[str, Any]:
    """Sibling keys a section needs to be valid on its own (auth needs a key source, concurrency max_inputs)."""
    if ".auth_config." in path:
        return {"api_key_env": "KEY"}
    if ".concurrency." in path and not path.endswith("max_inputs"):
        return {"max_inputs": 4}
    return {}


def _set(path: str, value: Any) -> dict[str, Any]:
    data = _with(path, value)
    parent = data
    for key in path.split(".")[:-1]:
        parent = parent[key]
    for key, extra in _needs(path).items():
        parent.setdefault(key, extra)
    return data


@pytest.mark.parametrize(("path", "accepted", "rejected", "message"), RANGES, ids=[f"{r[0]}={r[2]}" for r in RANGES])
def test_limit_accepts_its_boundary_and_rejects_past_it(
    path: str, accepted: list[Any], rejected: Any, message: str
) -> None:
    for value in accepted:
        settings = settings_from_dict(_set(path, value))
        node: Any = settings
        for key in path.split("."):
            node = getattr(node, key)
        assert node == (tuple(value) if isinstance(value, list) else value)
    key_path, got = _single_issue(_set(path, rejected))
    assert key_path == path
    assert got == message


def test_min_containers_may_equal_but_not_exceed_max_containers() -> None:
    settings_from_dict(_with(D, {"min_containers": 3, "max_containers": 3}))
    key_path, message = _single_issue(_with(D, {"min_containers": 4, "max_containers": 3}))
    assert key_path == f"{D}.min_containers"
    assert message == "must be <= max_containers (3) (got 4)"


@pytest.mark.parametrize(
    ("keys", "key", "message"),
    [
        (
            {"handler_min_containers": 4, "handler_max_containers": 3},
            "handler_min_containers",
            "must be <= handler_max_containers (3) (got 4)",
        ),
        # Each handler key defaults to the class's: the effective pair is what Modal would receive.
        (
            {"handler_min_containers": 4, "max_containers": 3},
            "handler_min_containers",
            "must be <= handler_max_containers (3, from max_containers) (got 4)",
        ),
        (
            {"min_containers": 2, "max_containers": 5, "handler_max_containers": 1},
            "handler_max_containers",
            "must be >= handler_min_containers (2, from min_containers) (got 1)",
        ),
    ],
)
def test_handler_min_containers_must_not_exceed_handler_max_containers(
    keys: dict[str, int], key: str, message: str
) -> None:
    settings_from_dict(_with(D, {"handler_min_containers": 3, "handler_max_containers": 3, "max_containers": 1}))
    key_path, got = _single_issue(_with(D, keys))
    assert (key_path, got) == (f"{D}.{key}", message)


def test_target_inputs_may_equal_but_not_exceed_max_inputs() -> None:
    settings_from_dict(_with(f"{D}.concurrency", {"max_inputs": 4, "target_inputs": 4}))
    key_path, message = _single_issue(_with(f"{D}.concurrency", {"max_inputs": 4, "target_inputs": 5}))
    assert key_path == f"{D}.concurrency.target_inputs"
    assert message == "must be <= max_inputs (4) (got 5)"


def test_cpu_and_memory_request_must_not_exceed_limit() -> None:
    key_path, message = _single_issue(_with(f"{D}.cpu", [2.0, 1.0]))
    assert (key_path, message) == (f"{D}.cpu", "the request must be <= the limit in [request, limit] (got [2.0, 1.0])")
    key_path, _ = _single_issue(_with(f"{D}.memory", [2048, 1024]))
    assert key_path == f"{D}.memory"


def test_initial_backoff_must_not_exceed_max_backoff() -> None:
    retry = f"{A}.queue_config.retry"
    settings_from_dict(_with(retry, {"initial_backoff_seconds": 2, "max_backoff_seconds": 2}))
    key_path, message = _single_issue(_with(retry, {"initial_backoff_seconds": 3, "max_backoff_seconds": 2}))
    assert key_path == f"{retry}.initial_backoff_seconds"
    assert message == "must be <= max_backoff_seconds (2.0) (got 3.0)"


def test_volume_reload_interval_absent_or_null_means_never_and_must_be_positive() -> None:
    assert settings_from_dict(BASE).app_settings.deployment_config.volume_reload_interval_seconds is None
    assert settings_from_dict(_with(f"{D}.volume_reload_interval_seconds", None)) is not None
    assert settings_from_dict(_with(f"{D}.volume_reload_interval_seconds", 1)) is not None
    for bad in (0, -1):
        key_path, message = _single_issue(_with(f"{D}.volume_reload_interval_seconds", bad))
        assert key_path == f"{D}.volume_reload_interval_seconds"
        assert message.startswith(f"must be >= 1 second or null (got {bad})")
        assert "remove the key to never reload" in message


@pytest.mark.parametrize("point", ["/", "/root", "/tmp", "/root/", "//tmp", "/tmp/."])
def test_reserved_mount_points_are_refused(point: str) -> None:
    key_path, message = _single_issue(_with(f"{D}.volumes", {point: "vol"}))
    assert key_path == f'{D}.volumes["{point}"]'
    assert message == f"mount point {point!r} is reserved by Modal: do not mount at '/', '/root' or '/tmp'"
    bucket = {"mount_point": point, "bucket_name": "b"}
    key_path, message = _single_issue(_with(f"{D}.cloud_bucket_mounts", [bucket]))
    assert key_path == f"{D}.cloud_bucket_mounts[0].mount_point"
    assert "reserved by Modal" in message


@pytest.mark.parametrize("point", ["mnt/data", "./data", ""])
def test_mount_points_must_be_absolute(point: str) -> None:
    key_path, message = _single_issue(_with(f"{D}.volumes", {point: "vol"}))
    assert message == f"mount point must be an absolute path starting with '/' (got {point!r})"
    bucket = {"mount_point": point, "bucket_name": "b"}
    key_path, message = _single_issue(_with(f"{D}.cloud_bucket_mounts", [bucket]))
    assert key_path == f"{D}.cloud_bucket_mounts[0].mount_point"


def test_allowed_mount_points_below_reserved_ones() -> None:
    settings = settings_from_dict(
        _with(
            D,
            {
                "volumes": {"/root/models": "v", "/tmp2": "w"},
                "cloud_bucket_mounts": [{"mount_point": "/mnt/b", "bucket_name": "b"}],
            },
        )
    )
    assert settings.app_settings.deployment_config.volumes == {"/root/models": "v", "/tmp2": "w"}


def test_two_mounts_at_one_point_are_refused() -> None:
    data = _with(
        D, {"volumes": {"/mnt/data": "v"}, "cloud_bucket_mounts": [{"mount_point": "/mnt/data/", "bucket_name": "b"}]}
    )
    key_path, message = _single_issue(data)
    assert key_path == f"{D}.cloud_bucket_mounts[0].mount_point"
    assert message == "mount point '/mnt/data/' is already used by volumes[\"/mnt/data\"]"


def test_bucket_key_prefix_must_end_with_a_slash() -> None:
    ok = {"mount_point": "/mnt/b", "bucket_name": "b", "key_prefix": "v1/"}
    settings_from_dict(_with(f"{D}.cloud_bucket_mounts", [ok]))
    key_path, message = _single_issue(_with(f"{D}.cloud_bucket_mounts", [{**ok, "key_prefix": "v1"}]))
    assert key_path == f"{D}.cloud_bucket_mounts[0].key_prefix"
    assert message == "key_prefix must end with '/' (got 'v1'; did you mean 'v1/'?)"


def test_mount_remote_path_must_be_absolute_and_type_file_or_dir() -> None:
    data = _with(
        f"{D}.mounts",
        [{"local_path": "a", "remote_path": "rel"}, {"local_path": "b", "remote_path": "/b", "type": "folder"}],
    )
    with pytest.raises(ConfigValidationError) as info:
        settings_from_dict(data)
    found = {(i.key_path, i.message) for i in info.value.issues}
    assert found == {
        (f"{D}.mounts[0].remote_path", "remote_path must be an absolute path starting with '/' (got 'rel')"),
        (f"{D}.mounts[1].type", "expected 'file' or 'dir' (got 'folder')"),
    }


def test_model_entries_may_be_empty() -> None:
    # As in the earlier modalkit (a base file that overlays fill in); serving one is refused by modalkit-serve.
    assert settings_from_dict(_with("model_settings.model_entries", {})).model_settings.model_entries == {}


def test_auth_needs_exactly_one_key_source() -> None:
    key_path, message = _single_issue(_with(f"{A}.auth_config", {}))
    assert key_path == f"{A}.auth_config"
    assert "give exactly one key source: api_key, api_key_env or ssm_key (none is set)" in message
    _, message = _single_issue(_with(f"{A}.auth_config", {"api_key": "k", "ssm_key": "/p"}))
    assert "(api_key, ssm_key are set)" in message
    for source in ({"api_key": "k"}, {"api_key": ["k1", "k2"]}, {"api_key_env": "E"}, {"ssm_key": "/p"}):
        settings_from_dict(_with(f"{A}.auth_config", source))


def test_auth_errors_never_echo_key_material() -> None:
    with pytest.raises(ConfigValidationError) as info:
        settings_from_dict(_with(f"{A}.auth_config", {"api_key": 1234567, "ssm_key": "/p"}))
    assert "1234567" not in str(info.value)
    assert "expected a string or a list of strings (got a number, not shown)" in str(info.value)
    assert "1234567" not in repr(settings_from_dict(_with(f"{A}.auth_config", {"api_key": "1234567"})))


def test_names_and_levels_are_checked() -> None:
    assert _single_issue(_with(f"{A}.app_prefix", "my app")) == (
        f"{A}.app_prefix",
        "may contain only letters, digits, '.', '_' and '-' (got 'my app')",
    )
    assert _single_issue(_with(f"{A}.app_prefix", ""))[1] == "must not be empty"
    assert _single_issue(_with(f"{A}.queue_config.backend", "no spaces"))[0] == f"{A}.queue_config.backend"
    settings_from_dict(_with(f"{A}.queue_config.backend", "my_plugin.backend"))
    assert _single_issue(_with(f"{A}.server_config.log_level", "LOUD"))[1] == (
        "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'LOUD')"
    )
    assert (
        settings_from_dict(_with(f"{A}.server_config.log_level", "debug")).app_settings.server_config.log_level
        == "DEBUG"
    )
    assert _single_issue(_with(f"{A}.auth_config", {"api_key_env": "E", "header": "x api key"}))[0] == (
        f"{A}.auth_config.header"
    )


def test_minimal_configuration_takes_the_documented_defaults() -> None:
    settings = settings_from_dict(BASE)
    assert isinstance(settings, Settings)
    app = settings.app_settings
    assert app.build_config.image is None
    assert app.build_config.tag == "latest"
    assert app.build_config.workdir == "/root"
    assert app.deployment_config.timeout == 300
    assert app.deployment_config.handler_concurrency == 100
    assert app.deployment_config.volumes == {}
    assert app.batch_config.max_batch_size == 1
    assert app.batch_config.wait_ms == 0
    assert app.queue_config.backend == "memory"
    assert app.queue_config.broker_url == "memory://"
    assert app.queue_config.sqs.fifo is None
    assert app.queue_config.sqs.message_group_id == "modalkit"
    assert app.queue_config.retry.max_attempts == 100
    assert app.queue_config.retry.max_elapsed_seconds == 120
    assert app.queue_config.outbox_size == 10000
    assert app.queue_config.dead_letter.file == "modalkit-dead-letters.jsonl"
    assert app.auth_config is None
    assert app.proxy_auth.key_env == "MODAL_PROXY_KEY"
    assert app.server_config.host == "127.0.0.1"
    assert app.server_config.port == 8000
    assert app.server_config.max_body_bytes == 1_048_576
    assert settings.model_settings.local_model_repository_folder == "."
    assert settings.model_settings.common == {}


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("app_settings.queue_config.allowed_queues", ["results", "a b"], "app_settings.queue_config.allowed_queues[1]"),
        ("app_settings.queue_config.allowed_queues", ["q" * 81], "app_settings.queue_config.allowed_queues[0]"),
        ("app_settings.queue_config.dead_letter.queue", "dead/letters", "app_settings.queue_config.dead_letter.queue"),
    ],
)
def test_a_configured_queue_name_no_backend_takes_is_refused_where_it_is(path: str, value: Any, where: str) -> None:
    key_path, message = _single_issue(_with(path, value))
    assert key_path == where
    assert "queue name" in message


def test_queue_names_at_the_limit_are_accepted() -> None:
    names = ["results", "jobs.fifo", "app:results", "a_b-c", "q" * 80]
    settings = settings_from_dict(_with("app_settings.queue_config.allowed_queues", names))
    assert settings.app_settings.queue_config.allowed_queues == names
