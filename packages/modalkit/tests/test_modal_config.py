"""ModalConfig against the real modal package, offline: what modalkit.yaml becomes once modal has read it."""

from __future__ import annotations

import inspect
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import modal
import pytest
from modal.types import FunctionInfo
from pytest_mock import MockerFixture

from modalkit import ModalConfig
from modalkit._image import ImageStep
from modalkit_config import ConfigValidationError, ModalkitDeprecationWarning, load_settings, settings_from_dict

from .conftest import FIXTURES, LoadApp

# The names modal 1.x removed (it raises DeprecationError for them).
REMOVED = {"concurrency_limit", "container_idle_timeout", "keep_warm", "allow_concurrent_inputs"}

MINIMAL: dict[str, Any] = {"app_settings": {"app_prefix": "mini"}, "model_settings": {"model_entries": {"m": {}}}}


def _full() -> ModalConfig:
    path = FIXTURES / "full.yaml"
    return ModalConfig(load_settings(path, env={}, env_file=None), config_files=[path])


def _info(obj: Any) -> Any:
    return obj._get_class_service_function().info() if hasattr(obj, "_get_class_service_function") else obj.info()


# --- naming ------------------------------------------------------------------------------------------------


def test_app_name_is_prefix_plus_dev_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODALKIT_APP_POSTFIX", raising=False)
    assert ModalConfig(settings_from_dict(MINIMAL)).app_name == "mini-dev"


def test_app_name_postfix_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_APP_POSTFIX", "-prod")
    assert ModalConfig(settings_from_dict(MINIMAL)).app_name == "mini-prod"


def test_no_settings_means_load_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "app_settings: {app_prefix: from-file}\nmodel_settings: {model_entries: {m: {}}}\n"
    (tmp_path / "modalkit.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALKIT_CONFIG", raising=False)
    config = ModalConfig()
    assert config.app_settings.app_prefix == "from-file"
    assert config.config_files == [tmp_path / "modalkit.yaml"]


def test_the_shipped_files_are_the_ones_read_even_when_dotenv_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "app_settings: {app_prefix: from-prod}\nmodel_settings: {model_entries: {m: {}}}\n"
    (tmp_path / "prod.yaml").write_text(text)
    (tmp_path / ".env").write_text("MODALKIT_CONFIG=prod.yaml\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALKIT_CONFIG", raising=False)
    config = ModalConfig()
    assert config.app_settings.app_prefix == "from-prod"
    assert config.config_files == [tmp_path / "prod.yaml"]
    assert config.image_plan()[-1] == ImageStep(
        "add_local_file", (str(tmp_path / "prod.yaml"), "/opt/modalkit/config/0-prod.yaml")
    )


def test_construction_builds_no_modal_object() -> None:
    config = ModalConfig(settings_from_dict(MINIMAL))
    assert (config.app_name, config.get_batched_method_settings()) == ("mini-dev", {"max_batch_size": 1, "wait_ms": 0})
    assert config.get_asgi_app_settings() == {"requires_proxy_auth": False}
    # image, volumes and secrets are built on first use only
    assert (config._image, config._volumes, config._secrets) == (None, None, None)


# --- every argument is a modal 1.x parameter ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("get_app_cls_settings", modal.App.cls),
        ("get_handler_settings", modal.App.function),
        ("get_asgi_app_settings", modal.asgi_app),
        ("get_batched_method_settings", modal.batched),
        ("get_handler_concurrency_settings", modal.concurrent),
        ("get_concurrency_settings", modal.concurrent),
    ],
)
def test_settings_are_parameters_of_the_modal_call(method: str, target: Any) -> None:
    settings = getattr(_full(), method)()
    accepted = set(inspect.signature(target).parameters)
    assert settings, method
    assert set(settings) <= accepted - REMOVED


def test_removed_yaml_names_reach_modal_under_their_new_names(load_app: LoadApp) -> None:
    with pytest.warns(ModalkitDeprecationWarning):
        module = load_app("modal_config_app.py", FIXTURES / "legacy.yaml")
    kwargs = module.config.get_app_cls_settings()
    assert not REMOVED & set(kwargs)
    assert (kwargs["min_containers"], kwargs["max_containers"], kwargs["scaledown_window"]) == (2, 7, 90)
    assert _info(module.Inference).concurrency_info == FunctionInfo.ConcurrencyInfo(max_inputs=3, target_inputs=None)
    assert _info(module.web_endpoints).concurrency_info.max_inputs == 20


def test_modal_rejects_a_removed_name_in_this_suite() -> None:
    # The guard the suite relies on: were modalkit to pass a removed name, modal would fail the test.
    app = modal.App("guard")
    removed: dict[str, Any] = {"keep_warm": 1}
    with pytest.raises(modal.exception.DeprecationError):
        app.cls(**removed)


# --- the full configuration, read back through modal ------------------------------------------------------


def test_full_config_on_the_inference_class(load_app: LoadApp) -> None:
    module = load_app("modal_config_app.py", FIXTURES / "full.yaml")
    info = _info(module.Inference)
    assert info.gpus == [("H100", 1), ("A100", 1)]
    assert info.cpu == (2.0, 4.0)
    assert info.memory_mib == 4096
    assert info.timeout == 600
    assert info.max_retries == 3
    assert info.regions == ["us-east"]
    assert info.cloud == "aws"
    assert set(info.volumes) == {"/models"}
    assert info.volumes["/models"].name == "model-weights"
    assert set(info.cloud_bucket_mounts) == {"/bucket"}
    bucket = info.cloud_bucket_mounts["/bucket"]
    assert (bucket.bucket_name, bucket.key_prefix, bucket.read_only) == ("my-bucket", "data/", True)
    assert info.secrets == ["modal.Secret.from_name('api-keys')", "modal.Secret.from_name('hf-token')"]
    assert info.batching_info == FunctionInfo.BatchingInfo(max_batch_size=16, wait_ms=25)
    assert info.concurrency_info == FunctionInfo.ConcurrencyInfo(max_inputs=4, target_inputs=2)
    assert info.method_names == ["process_request"]


def test_full_config_scaling_arguments() -> None:
    kwargs = _full().get_app_cls_settings()
    assert kwargs["min_containers"] == 1
    assert kwargs["max_containers"] == 5
    assert kwargs["buffer_containers"] == 2
    assert kwargs["scaledown_window"] == 120
    assert kwargs["enable_memory_snapshot"] is True


def test_full_config_on_the_web_function(load_app: LoadApp) -> None:
    module = load_app("modal_config_app.py", FIXTURES / "full.yaml")
    info = _info(module.web_endpoints)
    assert info.web_info is not None
    assert info.web_info.unauthenticated is False  # secure: true -> Modal proxy auth
    assert info.concurrency_info.max_inputs == 50
    assert info.secrets == ["modal.Secret.from_name('api-keys')", "modal.Secret.from_name('hf-token')"]
    assert info.gpus == []
    assert info.volumes == {}
    assert info.timeout == 600


def test_insecure_web_function_has_no_proxy_auth(load_app: LoadApp, tmp_path: Path) -> None:
    path = tmp_path / "modalkit.yaml"
    path.write_text("app_settings: {app_prefix: open}\nmodel_settings: {model_entries: {m: {}}}\n")
    module = load_app("modal_config_app.py", path)
    assert _info(module.web_endpoints).web_info.unauthenticated is True
    assert _info(module.Inference).concurrency_info is None  # no `concurrency`: inputs one batch at a time


# --- the image ---------------------------------------------------------------------------------------------


def test_image_plan_for_a_registry_image() -> None:
    config = _full()
    steps = config.image_plan()
    methods = [s.method for s in steps]
    assert steps[0] == ImageStep("from_registry", ("nvidia/cuda:12.2.0-runtime-ubuntu22.04",), {"add_python": "3.11"})
    assert ImageStep("env", ({"MODEL_VERSION": "1.0"},)) in steps
    assert ImageStep("apt_install", ("git",)) in steps
    assert ImageStep("pip_install", ("numpy==2.0.0",)) in steps
    assert ImageStep("run_commands", ("echo one", "echo two")) in steps
    assert ImageStep("workdir", ("/srv",)) in steps
    # modalkit's own packages, with the extras this configuration needs (sqs queue, ssm auth keys)
    [install] = [s for s in steps if s.method == "pip_install" and any("modalkit-serve" in a for a in s.args)]
    assert any(a.startswith("modalkit-queue[sqs]") for a in install.args)
    assert any(a.startswith("modalkit-auth[ssm]") for a in install.args)
    assert f"modal=={modal.__version__}" in install.args
    # mounts resolve against the config file's folder and come after every build step
    file_mount = ImageStep("add_local_file", (str(FIXTURES / "assets" / "labels.txt"), "/srv/labels.txt"))
    dir_mount = ImageStep("add_local_dir", (str(FIXTURES / "assets"), "/srv/assets"))
    assert file_mount in steps
    assert dir_mount in steps
    last_build = max(i for i, m in enumerate(methods) if m in {"pip_install", "run_commands", "workdir", "env"})
    assert steps.index(file_mount) > last_build
    assert steps.index(dir_mount) > last_build


def test_image_ships_the_config_and_the_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_APP_POSTFIX", "-prod")
    steps = _full().image_plan()
    remote = "/opt/modalkit/config/0-full.yaml"
    assert ImageStep("env", ({"MODALKIT_APP_POSTFIX": "-prod", "MODALKIT_CONFIG": remote},)) in steps
    assert steps[-1] == ImageStep("add_local_file", (str(FIXTURES / "full.yaml"), remote))


def test_image_plan_for_debian_slim_with_a_single_run_command() -> None:
    with pytest.warns(ModalkitDeprecationWarning):
        settings = load_settings(FIXTURES / "legacy.yaml", env={}, env_file=None)
    steps = ModalConfig(settings, config_files=[]).image_plan()
    local_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert steps[0] == ImageStep("debian_slim", kwargs={"python_version": local_python})
    assert ImageStep("run_commands", ("echo only-one",)) in steps
    assert not any(s.method == "add_local_file" for s in steps)


def test_get_image_is_a_modal_image_built_once() -> None:
    config = _full()
    image = config.get_image()
    assert isinstance(image, modal.Image)
    assert config.get_image() is image
    assert config.get_app_cls_settings()["image"] is image


# --- volumes inside the container ---------------------------------------------------------------------------


def test_reload_volumes_reloads_each_and_survives_a_failure(
    caplog: pytest.LogCaptureFixture, mocker: MockerFixture
) -> None:
    config = ModalConfig(
        settings_from_dict(
            {
                "app_settings": {"app_prefix": "vols", "deployment_config": {"volumes": {"/a": "va", "/b": "vb"}}},
                "model_settings": {"model_entries": {"m": {}}},
            }
        ),
        config_files=[],
    )
    # Volume.reload is a call to Modal's servers: the one thing replaced, on the real Volume objects.
    broken = mocker.patch.object(config.volumes["/a"], "reload", side_effect=ConnectionError("volume unreachable"))
    fine = mocker.patch.object(config.volumes["/b"], "reload")
    with caplog.at_level(logging.ERROR, logger="modalkit"):
        config.reload_volumes()
    broken.assert_called_once_with()
    fine.assert_called_once_with()
    assert "/a" in caplog.text


def test_volumes_are_cached_so_reload_uses_the_mounted_objects() -> None:
    config = _full()
    assert config.volumes is config.volumes
    assert config.all_volumes["/models"] is config.volumes["/models"]


def test_this_suite_turns_modal_deprecations_into_errors(request: pytest.FixtureRequest) -> None:
    marks = [m.args[0] for m in request.node.iter_markers("filterwarnings")]
    assert "error::modal.exception.DeprecationError" in marks
    with pytest.raises(modal.exception.DeprecationError):
        warnings.warn("deprecated", modal.exception.DeprecationError, stacklevel=1)


@pytest.mark.parametrize(
    ("image", "tag", "reference"),
    [
        ("docker.io/library/python:3.11-slim", "latest", "docker.io/library/python:3.11-slim"),
        ("ghcr.io/org/img:1.2", "latest", "ghcr.io/org/img:1.2"),
        ("ghcr.io/org/img@sha256:" + "a" * 64, "latest", "ghcr.io/org/img@sha256:" + "a" * 64),
        ("registry:5000/img", "latest", "registry:5000/img:latest"),
        ("registry:5000/img", "2.0", "registry:5000/img:2.0"),
        ("nvidia/cuda", "12.2.0-runtime-ubuntu22.04", "nvidia/cuda:12.2.0-runtime-ubuntu22.04"),
    ],
)
def test_registry_reference_gets_the_tag_only_when_it_has_neither_tag_nor_digest(
    image: str, tag: str, reference: str
) -> None:
    data = {**MINIMAL, "app_settings": {"app_prefix": "mini", "build_config": {"image": image, "tag": tag}}}
    steps = ModalConfig(settings_from_dict(data), config_files=[]).image_plan()
    assert steps[0].method == "from_registry"
    assert steps[0].args == (reference,)


@pytest.mark.parametrize("image", ["python:3.11-slim", "python", "test-image"])
def test_a_plain_image_name_is_refused_at_its_line_naming_both_replacements(tmp_path: Path, image: str) -> None:
    # The earlier modalkit built debian_slim for an image without a "/", whatever it said; pulling it instead would
    # change a migrating user's image silently, so the name must say which one it means.
    path = tmp_path / "modalkit.yaml"
    path.write_text(
        "app_settings:\n  app_prefix: mini\n  build_config:\n"
        f"    image: {image!r}\n"
        "model_settings:\n  model_entries: {m: {}}\n"
    )
    config = ModalConfig(load_settings(path), config_files=[])
    with pytest.raises(ConfigValidationError) as caught:
        config.image_plan()
    message = str(caught.value)
    assert message.startswith(f"{path}:4: app_settings.build_config.image: "), message
    assert f"docker.io/library/{image}" in message
    assert "debian_slim" in message
    assert "\n" not in message


def _deployment(**keys: Any) -> ModalConfig:
    data = {**MINIMAL, "app_settings": {"app_prefix": "mini", "deployment_config": keys}}
    return ModalConfig(settings_from_dict(data), config_files=[])


def test_serving_keys_reach_the_inference_class() -> None:
    config = _deployment(
        timeout=600,
        ephemeral_disk=4096,
        nonpreemptible=True,
        startup_timeout=900,
        single_use_containers=True,
        block_network=True,
    )
    settings = config.get_app_cls_settings()
    assert settings["ephemeral_disk"] == 4096
    assert settings["nonpreemptible"] is True
    assert settings["startup_timeout"] == 900
    assert settings["single_use_containers"] is True
    assert settings["block_network"] is True
    for key in ("ephemeral_disk", "nonpreemptible", "startup_timeout", "single_use_containers", "block_network"):
        assert key in inspect.signature(modal.App.cls).parameters
    # the web function must keep its network (it calls the class); the class's isolation stays on the class
    assert "block_network" not in config.get_handler_settings()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ephemeral_disk", 0),
        ("ephemeral_disk", 3 * 1024 * 1024 + 1),
        ("startup_timeout", 0),
        ("startup_timeout", 86401),
    ],
)
def test_serving_keys_outside_modals_limits_are_refused(key: str, value: int) -> None:
    from modalkit_config import ConfigError

    with pytest.raises(ConfigError, match=key):
        _deployment(**{key: value})


def test_web_function_scales_on_its_own_keys_defaulting_to_the_class() -> None:
    inherited = _deployment(min_containers=1, max_containers=5, buffer_containers=2, scaledown_window=120)
    handler = inherited.get_handler_settings()
    assert (handler["min_containers"], handler["max_containers"]) == (1, 5)
    assert (handler["buffer_containers"], handler["scaledown_window"]) == (2, 120)
    own = _deployment(
        min_containers=1,
        max_containers=5,
        handler_min_containers=0,
        handler_max_containers=2,
        handler_buffer_containers=0,
        handler_scaledown_window=600,
    ).get_handler_settings()
    assert (own["min_containers"], own["max_containers"]) == (0, 2)
    assert (own["buffer_containers"], own["scaledown_window"]) == (0, 600)
    for key in ("min_containers", "max_containers", "buffer_containers", "scaledown_window"):
        assert key in inspect.signature(modal.App.function).parameters


_APP_CALLING_MODALCONFIG = "from modalkit import ModalConfig\nconfig = ModalConfig()\n"


def test_no_settings_falls_back_to_the_yaml_beside_the_app_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runpy

    app_dir = tmp_path / "examples" / "svc"
    app_dir.mkdir(parents=True)
    (app_dir / "modalkit.yaml").write_text(
        "app_settings: {app_prefix: beside}\nmodel_settings: {model_entries: {m: {}}}\n"
    )
    (app_dir / "app.py").write_text(_APP_CALLING_MODALCONFIG)
    monkeypatch.chdir(tmp_path)  # like `modal deploy examples/svc/app.py` from the repo root
    monkeypatch.delenv("MODALKIT_CONFIG", raising=False)
    config = runpy.run_path(str(app_dir / "app.py"))["config"]
    assert config.app_settings.app_prefix == "beside"
    assert config.config_files == [app_dir / "modalkit.yaml"]


def test_no_yaml_anywhere_names_both_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    from modalkit_config import ConfigFileNotFoundError

    app_dir = tmp_path / "svc"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(_APP_CALLING_MODALCONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALKIT_CONFIG", raising=False)
    with pytest.raises(ConfigFileNotFoundError) as caught:
        runpy.run_path(str(app_dir / "app.py"))
    message = str(caught.value)
    assert str(tmp_path / "modalkit.yaml") in message
    assert str(app_dir / "modalkit.yaml") in message
