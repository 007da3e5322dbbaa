"""The meta-package's public surface: one import place, the earlier import paths, sibling version ranges."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import requires, version

from packaging.requirements import Requirement

import modalkit

SIBLINGS = ("modalkit-pipeline", "modalkit-config", "modalkit-queue", "modalkit-auth", "modalkit-serve")


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(modalkit) if not name.startswith("_")}
    modules = {"cli", "inference_pipeline", "iomodel", "modal_config", "modal_service", "settings", "task_queue"}
    modules |= {"testing", "exceptions", "fast_api"}  # submodules imported by the earlier-API modules
    public -= modules
    assert set(modalkit.__all__) - {"__version__"} == public
    for name in modalkit.__all__:
        assert hasattr(modalkit, name), name


def test_version_comes_from_the_installed_metadata() -> None:
    assert modalkit.__version__ == version("modalkit")


def test_sibling_version_ranges_contain_the_installed_siblings() -> None:
    pins = {Requirement(r).name: Requirement(r) for r in requires("modalkit") or []}
    for sibling in SIBLINGS:
        assert sibling in pins, f"modalkit does not depend on {sibling}"
        assert pins[sibling].specifier.contains(version(sibling)), (
            f"modalkit requires {pins[sibling]}, but {sibling} is {version(sibling)}"
        )
    assert pins["modal"].specifier.contains(version("modal"))


def test_the_earlier_import_paths_still_work() -> None:
    expected = {
        "modalkit.inference_pipeline": ["InferencePipeline"],
        "modalkit.iomodel": [
            "AsyncInputModel",
            "AsyncOutputModel",
            "DelayedFailureOutputModel",
            "InferenceOutputModel",
            "SyncInputModel",
        ],
        "modalkit.modal_config": ["ModalConfig"],
        "modalkit.modal_service": ["ModalService", "create_web_endpoints"],
        "modalkit.settings": ["Settings", "AppSettings", "ModelSettings", "DeploymentConfig", "load_settings"],
        "modalkit.task_queue": ["QueueBackend", "InMemoryBackend", "create_backend", "send_response_queue"],
    }
    for module_name, names in expected.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert hasattr(module, name), f"{module_name}.{name}"
        assert set(module.__all__) >= set(names)
    assert importlib.import_module("modalkit.modal_service").ModalService is modalkit.ModalService
    assert importlib.import_module("modalkit.iomodel").SyncInputModel is modalkit.SyncInputModel


def test_import_reads_no_config_and_builds_no_modal_object(tmp_path: object) -> None:
    # Run where there is no modalkit.yaml: importing must not look for one.
    code = (
        "import modalkit, modalkit.modal_service, modalkit.settings, modalkit.task_queue, modalkit.cli\n"
        "import modalkit.testing\n"
        "import modal, gc\n"
        "kinds = (modal.Image, modal.Volume, modal.Secret, modal.App, modal.Dict)\n"
        "objs = [o for o in gc.get_objects() if isinstance(o, kinds)]\n"
        "print(len(objs))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(tmp_path))
    assert out.stdout.strip() == "0"
