"""``deployment_config.concurrency`` and ``handler_concurrency`` reach Modal, or the app file is refused.

Modal 1.x takes input concurrency only as the ``@modal.concurrent`` decorator, which ``@app.cls(**kwargs)``
cannot carry: a YAML setting that no decorator applies would be dropped without a word. Read back with
``.info()`` from the real modal package, offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from modal.types import FunctionInfo

from modalkit.errors import ServiceDefinitionError
from modalkit.iomodel import SyncInputModel

from .conftest import FIXTURES, LoadApp

ROOT = Path(__file__).resolve().parents[3]


def _info(obj: Any) -> Any:
    return obj._get_class_service_function().info() if hasattr(obj, "_get_class_service_function") else obj.info()


def _translation_yaml(tmp_path: Path, **deployment: Any) -> Path:
    data = yaml.safe_load((FIXTURES / "translation.yaml").read_text())
    data["app_settings"]["deployment_config"].update(deployment)
    path = tmp_path / "modalkit.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_cls_applies_the_configured_concurrency(load_app: LoadApp, tmp_path: Path) -> None:
    config = _translation_yaml(tmp_path, concurrency={"max_inputs": 8, "target_inputs": 4})
    module = load_app("modal_cls_app.py", config)
    info = _info(module.TranslationApp)
    assert info.concurrency_info == FunctionInfo.ConcurrencyInfo(max_inputs=8, target_inputs=4)
    assert info.batching_info == FunctionInfo.BatchingInfo(max_batch_size=8, wait_ms=10)
    assert info.gpus == [("T4", 1)]
    # Still the same class underneath: .local() runs the enter hook and the pipeline.
    pipeline_module: Any = module
    item = SyncInputModel[pipeline_module.TextInput](message=pipeline_module.TextInput(text="hello"))
    [out] = module.TranslationApp(model_name="translation_model").process_request.local([item])
    assert out.translation == "bonjour"


def test_config_cls_without_concurrency_leaves_modal_s_default(load_app: LoadApp) -> None:
    module = load_app("modal_cls_app.py", FIXTURES / "translation.yaml")
    assert _info(module.TranslationApp).concurrency_info is None


def test_concurrency_no_decorator_applies_is_refused_naming_the_decorator(load_app: LoadApp, tmp_path: Path) -> None:
    config = _translation_yaml(tmp_path, concurrency={"max_inputs": 8})
    with pytest.raises(ServiceDefinitionError) as info:
        load_app("modal_translation_app.py", config)  # @app.cls(**config.get_app_cls_settings()), no decorator
    message = str(info.value)
    assert "deployment_config.concurrency" in message
    assert "TranslationApp" in message
    assert "@config.concurrent()" in message
    assert "@config.cls(app)" in message


def test_upstream_style_web_function_takes_handler_concurrency(load_app: LoadApp) -> None:
    folder = ROOT / "examples" / "upstream_style"
    module = load_app(folder / "app.py", folder / "modalkit.yaml")
    assert _info(module.web_endpoints).concurrency_info.max_inputs == 100  # handler_concurrency's default
