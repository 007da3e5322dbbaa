"""Every public name the earlier modalkit's users imported still imports from the same module path."""

from __future__ import annotations

import importlib

import pytest

EARLIER_NAMES = [
    ("modalkit.exceptions", "AuthConfigError"),
    ("modalkit.exceptions", "BackendError"),
    ("modalkit.exceptions", "DependencyError"),
    ("modalkit.exceptions", "TypeValidationError"),
    ("modalkit.fast_api", "create_app"),
    ("modalkit.fast_api", "T_input"),
    ("modalkit.fast_api", "T_output"),
    ("modalkit.inference_pipeline", "InferencePipeline"),
    ("modalkit.iomodel", "T"),
    ("modalkit.iomodel", "AsyncInputModel"),
    ("modalkit.iomodel", "AsyncOutputModel"),
    ("modalkit.iomodel", "DelayedFailureOutputModel"),
    ("modalkit.iomodel", "InferenceOutputModel"),
    ("modalkit.iomodel", "SyncInputModel"),
    ("modalkit.modal_config", "ModalConfig"),
    ("modalkit.modal_config", "Settings"),
    ("modalkit.modal_service", "ModalService"),
    ("modalkit.modal_service", "Settings"),
    ("modalkit.modal_service", "create_web_endpoints"),
    ("modalkit.modal_service", "send_response_queue"),
    ("modalkit.settings", "AppSettings"),
    ("modalkit.settings", "BatchConfig"),
    ("modalkit.settings", "BuildConfig"),
    ("modalkit.settings", "CloudBucketMount"),
    ("modalkit.settings", "DeploymentConfig"),
    ("modalkit.settings", "ModelSettings"),
    ("modalkit.settings", "Mount"),
    ("modalkit.settings", "MountType"),
    ("modalkit.settings", "QueueConfig"),
    ("modalkit.settings", "Settings"),
    ("modalkit.settings", "Volume"),
    ("modalkit.task_queue", "CustomRedisExample"),
    ("modalkit.task_queue", "InMemoryBackend"),
    ("modalkit.task_queue", "QueueBackend"),
    ("modalkit.task_queue", "SQSBackend"),
    ("modalkit.task_queue", "TaskIQExample"),
    ("modalkit.task_queue", "create_backend"),
    ("modalkit.task_queue", "register_backend"),
    ("modalkit.task_queue", "send_response_queue"),
]


@pytest.mark.parametrize(("module", "name"), EARLIER_NAMES, ids=[f"{m}.{n}" for m, n in EARLIER_NAMES])
def test_earlier_name_imports(module: str, name: str) -> None:
    mod = importlib.import_module(module)
    assert name in mod.__all__, f"{module}.__all__ does not list {name}"
    assert getattr(mod, name) is not None


@pytest.mark.parametrize("method", ["async_call", "sync_call", "send_async_response"])
def test_modal_service_keeps_its_earlier_methods(method: str) -> None:
    from modalkit.modal_service import ModalService

    assert callable(getattr(ModalService, method))


def test_exceptions_keep_their_builtin_bases() -> None:
    from modalkit.exceptions import AuthConfigError, BackendError, DependencyError, TypeValidationError

    assert issubclass(AuthConfigError, ValueError)
    assert issubclass(BackendError, ValueError)
    assert issubclass(DependencyError, ImportError)
    assert issubclass(TypeValidationError, TypeError)


def test_the_same_settings_class_everywhere() -> None:
    from modalkit.modal_config import Settings as ConfigSettings
    from modalkit.modal_service import Settings as ServiceSettings
    from modalkit.settings import Settings

    assert ConfigSettings is Settings
    assert ServiceSettings is Settings


def test_iomodel_T_is_a_typevar_bound_to_base_model() -> None:
    from typing import TypeVar

    from pydantic import BaseModel

    from modalkit.iomodel import T

    assert isinstance(T, TypeVar)
    assert T.__bound__ is BaseModel


def test_mount_type_values_are_accepted_by_mount() -> None:
    from modalkit.settings import Mount, MountType, Volume

    assert str(MountType.FILE) == "file"
    assert str(MountType.DIR) == "dir"
    mount = Mount(local_path="configs", remote_path="/app/configs", type=MountType.DIR)
    assert mount.type == "dir"
    volume = Volume(mount_point="/mnt/models", volume_name="model-vol")
    assert (volume.mount_point, volume.volume_name) == ("/mnt/models", "model-vol")


def test_the_earlier_modules_without_modal_names_do_not_import_modal() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import modalkit.exceptions, modalkit.fast_api, modalkit.inference_pipeline, modalkit.iomodel\n"
        "import modalkit.settings, modalkit.task_queue\n"
        "from modalkit import LegacyQueueBackend\n"
        "print('modal' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
