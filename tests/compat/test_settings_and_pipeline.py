"""The earlier configuration and pipeline behaviour: ``Settings()`` reading files and the environment, a
``Path`` model folder, empty ``model_entries``, the Modal 0.x names, ``run_inference([])``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from modalkit.inference_pipeline import InferencePipeline
from modalkit.iomodel import InferenceOutputModel
from modalkit.settings import AppSettings, DeploymentConfig, ModelSettings, Settings
from modalkit_config import ModalkitDeprecationWarning

BASE = """
app_settings:
  app_prefix: "new_prefix"
  build_config: {image: "test-image", tag: "test"}
  deployment_config: {gpu: "T4", volumes: {}, max_containers: 1}
  batch_config: {max_batch_size: 1, wait_ms: 0}
model_settings:
  local_model_repository_folder: "/tmp/test"
  model_entries: {m: {}}
  common: {}
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("MODALKIT_CONFIG", "MODALKIT_APP_SETTINGS__APP_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_settings_reads_modalkit_yaml_in_the_working_directory(in_tmp: Path) -> None:
    (in_tmp / "modalkit.yaml").write_text(BASE)
    assert Settings().app_settings.app_prefix == "new_prefix"


def test_settings_reads_the_files_modalkit_config_lists_later_ones_winning(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (in_tmp / "base.yaml").write_text(BASE)
    (in_tmp / "prod.yaml").write_text("app_settings:\n  deployment_config:\n    max_containers: 2\n")
    monkeypatch.setenv("MODALKIT_CONFIG", f"{in_tmp / 'base.yaml'},{in_tmp / 'prod.yaml'}")
    settings = Settings()
    assert settings.app_settings.app_prefix == "new_prefix"
    assert settings.app_settings.deployment_config.max_containers == 2


def test_environment_overrides_the_file(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / "modalkit.yaml").write_text(BASE)
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__APP_PREFIX", "test_prefix")
    assert Settings().app_settings.app_prefix == "test_prefix"


def test_local_model_repository_folder_takes_a_path(tmp_path: Path) -> None:
    models = ModelSettings(local_model_repository_folder=tmp_path / "models", model_entries={"m": {}}, common={})
    assert models.local_model_repository_folder == str(tmp_path / "models")


def test_empty_model_entries_are_accepted(in_tmp: Path) -> None:
    (in_tmp / "modalkit.yaml").write_text(BASE.replace("model_entries: {m: {}}", "model_entries: {}"))
    assert Settings().model_settings.model_entries == {}
    assert ModelSettings(local_model_repository_folder=".", model_entries={}, common={}).model_entries == {}


def test_serving_without_any_model_entry_is_refused_naming_the_fix(in_tmp: Path) -> None:
    from modalkit_config import ConfigError, settings_from_dict
    from modalkit_serve import LocalRunner, create_app

    settings = settings_from_dict({"app_settings": {"app_prefix": "x"}, "model_settings": {"model_entries": {}}})

    class Echo(InferencePipeline[Text, InferenceOutputModel]):
        def preprocess(self, input_list: list[Text]) -> dict[str, Any]:
            return {}

        def predict(self, input_list: list[Text], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
            return {}

        def postprocess(self, input_list: list[Text], raw_output: dict[str, Any]) -> list[InferenceOutputModel]:
            return [InferenceOutputModel() for _ in input_list]

    with pytest.raises(ConfigError, match=r"model_settings\.model_entries.*my_model: \{\}"):
        create_app(LocalRunner(Echo, settings), Text, InferenceOutputModel, settings)


def test_modal_0x_names_map_to_the_new_ones_with_a_warning() -> None:
    with pytest.warns(ModalkitDeprecationWarning) as record:
        config = DeploymentConfig(concurrency_limit=10, container_idle_timeout=300, allow_concurrent_inputs=5)  # type: ignore[call-arg]  # a Modal 0.x name
    assert (config.max_containers, config.scaledown_window) == (10, 300)
    assert config.concurrency is not None
    assert config.concurrency.max_inputs == 5
    messages = " ".join(str(w.message) for w in record)
    assert "max_containers" in messages
    assert "scaledown_window" in messages


def test_reading_a_modal_0x_name_warns_and_gives_the_new_value() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModalkitDeprecationWarning)
        config = DeploymentConfig(concurrency_limit=10, allow_concurrent_inputs=4)  # type: ignore[call-arg]  # a Modal 0.x name
    with pytest.warns(ModalkitDeprecationWarning, match="max_containers"):
        assert config.concurrency_limit == 10  # type: ignore[attr-defined]  # a Modal 0.x name
    with pytest.warns(ModalkitDeprecationWarning, match="scaledown_window"):
        assert config.container_idle_timeout is None  # type: ignore[attr-defined]  # a Modal 0.x name
    with pytest.warns(ModalkitDeprecationWarning, match=r"concurrency\.max_inputs"):
        assert config.allow_concurrent_inputs == 4  # type: ignore[attr-defined]  # a Modal 0.x name


def test_setting_a_modal_0x_name_warns_and_sets_the_new_field() -> None:
    config = DeploymentConfig()
    with pytest.warns(ModalkitDeprecationWarning, match="max_containers"):
        config.concurrency_limit = 3  # type: ignore[attr-defined]  # a Modal 0.x name
    assert config.max_containers == 3


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="concurency_limit"):
        DeploymentConfig().concurency_limit  # type: ignore[attr-defined]  # noqa: B018


def test_earlier_section_models_build_settings_directly(in_tmp: Path) -> None:
    tmp_path = in_tmp  # no modalkit.yaml here: complete arguments need none
    settings = Settings(
        app_settings=AppSettings(app_prefix="test-app"),
        model_settings=ModelSettings(
            local_model_repository_folder=tmp_path / "models",
            model_entries={"test-model": {"param": "value"}},
            common={},
        ),
    )
    assert settings.model_settings.model_entries["test-model"] == {"param": "value"}


class Text(BaseModel):
    text: str


def test_run_inference_on_an_empty_list_runs_the_three_stages() -> None:
    calls: list[str] = []

    class Counting(InferencePipeline):  # type: ignore[type-arg]  # the earlier docs did not parameterise it
        def preprocess(self, input_list: list[Any]) -> dict[str, Any]:
            calls.append("preprocess")
            return {}

        def predict(self, input_list: list[Any], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
            calls.append("predict")
            return {}

        def postprocess(self, input_list: list[Any], raw_output: dict[str, Any]) -> list[Any]:
            calls.append("postprocess")
            return []

    pipeline = Counting("m", "/tmp/models", {})
    assert pipeline.run_inference([]) == []
    assert calls == ["preprocess", "predict", "postprocess"]


def test_output_meta_is_a_field_that_stays_out_of_the_json_when_empty() -> None:
    out = InferenceOutputModel(status="success")
    assert out.meta == {}
    assert "meta" not in out.model_dump()
    out.meta = {"request_id": "r1"}
    assert out.model_dump()["meta"] == {"request_id": "r1"}
