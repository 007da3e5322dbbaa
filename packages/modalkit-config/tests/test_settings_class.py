"""`Settings` is a pydantic-settings BaseSettings: `Settings()` gives what `load_settings()` gives."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from modalkit_config import ConfigValidationError, ModalkitDeprecationWarning, Settings, load_settings

Write = Callable[[str, str], Path]

MINIMAL_YAML = """
app_settings:
  app_prefix: demo
  batch_config:
    max_batch_size: 4
model_settings:
  model_entries:
    m: {}
"""


@pytest.fixture
def project(write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write("modalkit.yaml", MINIMAL_YAML)
    monkeypatch.chdir(tmp_path)
    for name in ("MODALKIT_CONFIG", "MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_settings_is_a_base_settings() -> None:
    assert issubclass(Settings, BaseSettings)


def test_settings_without_arguments_equals_load_settings(project: Path) -> None:
    assert Settings() == load_settings()
    assert Settings().app_settings.batch_config.max_batch_size == 4


def test_environment_and_env_file_override_the_yaml(
    project: Path, write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = write("custom.env", "MODALKIT_APP_SETTINGS__APP_PREFIX=from-dotenv\n")
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE", "8")
    settings = Settings(_env_file=env_file)
    assert settings.app_settings.app_prefix == "from-dotenv"
    assert settings.app_settings.batch_config.max_batch_size == 8
    assert settings == load_settings(env_file=env_file)


def test_overlays_named_in_modalkit_config(project: Path, write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    write("prod.yaml", "app_settings:\n  batch_config:\n    wait_ms: 7\n")
    monkeypatch.setenv("MODALKIT_CONFIG", "modalkit.yaml,prod.yaml")
    settings = Settings()
    assert settings.app_settings.batch_config.wait_ms == 7
    assert settings.app_settings.batch_config.max_batch_size == 4


def test_secrets_directory(project: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "MODALKIT_APP_SETTINGS").write_text(json.dumps({"app_prefix": "from-secret"}))
    settings = Settings(_secrets_dir=secrets)
    assert settings.app_settings.app_prefix == "from-secret"
    assert settings.app_settings.batch_config.max_batch_size == 4


def test_errors_keep_file_line_and_key_path_all_collected(project: Path, write: Write) -> None:
    write(
        "modalkit.yaml",
        """
        app_settings:
          app_prefix: demo
          batch_config:
            max_batch_size: lots
            wait_ms: -1
        model_settings:
          model_entries:
            m: {}
        """,
    )
    with pytest.raises(ConfigValidationError) as info:
        Settings()
    text = str(info.value)
    assert "modalkit.yaml:4: app_settings.batch_config.max_batch_size: expected an integer" in text
    assert "modalkit.yaml:5: app_settings.batch_config.wait_ms: must be >= 0" in text
    assert "Traceback" not in text


def test_deprecated_alias_warns(project: Path, write: Write) -> None:
    write(
        "modalkit.yaml",
        """
        app_settings:
          app_prefix: demo
          deployment_config:
            concurrency_limit: 3
        model_settings:
          model_entries:
            m: {}
        """,
    )
    match = "modalkit.yaml:4: app_settings.deployment_config.concurrency_limit"
    with pytest.warns(ModalkitDeprecationWarning, match=match):
        settings = Settings()
    assert settings.app_settings.deployment_config.max_containers == 3


def test_settings_customise_sources_can_reorder(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tool may put the YAML above the environment (or drop a source)."""

    class YamlWins(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources = super().settings_customise_sources(
                settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
            )
            yaml_source = sources[-1]
            return (init_settings, yaml_source, env_settings)

    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE", "8")
    assert YamlWins().app_settings.batch_config.max_batch_size == 4
    assert Settings().app_settings.batch_config.max_batch_size == 8


def test_explicit_values_still_validate_as_before() -> None:
    data: dict[str, Any] = {"app_settings": {"app_prefix": "x"}, "model_settings": {"model_entries": {"m": {}}}}
    assert Settings.model_validate(data).app_settings.app_prefix == "x"


def test_an_environment_key_reaches_a_mixed_case_yaml_key(
    project: Path, write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pydantic-settings lower-cases environment names; the entry is spelled MyModel in the YAML.
    write("modalkit.yaml", MINIMAL_YAML.replace("m: {}", "MyModel: {size: 1}"))
    monkeypatch.setenv("MODALKIT_MODEL_SETTINGS__MODEL_ENTRIES__MYMODEL__SIZE", "2")
    settings = Settings()
    assert settings.model_settings.model_entries == {"MyModel": {"size": 2}}
    assert settings.model_settings.model_entries == load_settings().model_settings.model_entries


def test_a_dotenv_key_reaches_a_mixed_case_yaml_key(project: Path, write: Write) -> None:
    write("modalkit.yaml", MINIMAL_YAML.replace("m: {}", "MyModel: {size: 1}"))
    env_file = write("x.env", "MODALKIT_MODEL_SETTINGS__MODEL_ENTRIES__mymodel__SIZE=3\n")
    assert Settings(_env_file=env_file).model_settings.model_entries == {"MyModel": {"size": 3}}


def test_a_new_environment_entry_is_lower_cased_like_the_loader_does(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODALKIT_MODEL_SETTINGS__MODEL_ENTRIES__OTHER__SIZE", "5")
    assert set(Settings().model_settings.model_entries) == {"m", "other"}


def test_image_environment_names_keep_their_case(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BUILD_CONFIG__ENV__HF_HOME", "/cache/hf")
    assert Settings().app_settings.build_config.env == {"HF_HOME": "/cache/hf"}
    assert Settings().app_settings.build_config.env == load_settings().app_settings.build_config.env


def test_an_environment_value_error_names_its_variable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE", "0")
    with pytest.raises(ConfigValidationError) as info:
        Settings()
    [issue] = info.value.issues
    assert issue.file == "$MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE"
    assert issue.key_path == "app_settings.batch_config.max_batch_size"


def test_a_dotenv_value_error_names_its_file_and_line(project: Path, write: Write) -> None:
    env_file = write(
        "x.env", "# comment\nMODALKIT_APP_SETTINGS__APP_PREFIX=ok\nMODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS=-5\n"
    )
    with pytest.raises(ConfigValidationError) as info:
        Settings(_env_file=env_file)
    [issue] = info.value.issues
    assert (issue.file, issue.line, issue.key_path) == (str(env_file), 3, "app_settings.batch_config.wait_ms")


def test_settings_uses_no_private_pydantic_settings_hook() -> None:
    # `_settings_build_values` is pydantic-settings' internal step; overriding it broke on its signature changes.
    assert "_settings_build_values" not in Settings.__dict__


# --- Settings() reads each source as load_settings() does ----------------------------------------------


def test_a_dotenv_file_may_hold_other_variables(project: Path, write: Write) -> None:
    # pydantic-settings turns every unused .env entry into an extra key (an error with extra="forbid").
    env_file = write("x.env", "OTHER=1\nMODALKIT_APP_POSTFIX=-dev\nMODALKIT_APP_SETTINGS__APP_PREFIX=from-dotenv\n")
    settings = Settings(_env_file=env_file)
    assert settings.app_settings.app_prefix == "from-dotenv"
    assert settings == load_settings(env_file=env_file)


def test_a_dotenv_file_may_name_the_config_files(project: Path, write: Write) -> None:
    write("other.yaml", MINIMAL_YAML.replace("app_prefix: demo", "app_prefix: other"))
    env_file = write("x.env", "MODALKIT_CONFIG=other.yaml\n")
    assert Settings(_env_file=env_file).app_settings.app_prefix == "other"
    assert Settings(_env_file=env_file) == load_settings(env_file=env_file)


def test_a_malformed_variable_name_is_reported(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_APP_SETTINGS____APP_PREFIX", "x")
    with pytest.raises(ConfigValidationError) as info:
        Settings()
    assert str(info.value) == (
        "$MODALKIT_APP_SETTINGS____APP_PREFIX: "
        "empty key in the variable name: separate keys with exactly two underscores"
    )


def test_a_deprecated_key_in_the_environment_warns_naming_its_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__CONCURRENCY_LIMIT", "7")
    with pytest.warns(ModalkitDeprecationWarning) as record:
        settings = Settings()
    assert [str(w.message) for w in record] == [
        "$MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__CONCURRENCY_LIMIT: "
        "app_settings.deployment_config.concurrency_limit is deprecated; "
        "use app_settings.deployment_config.max_containers instead"
    ]
    assert {w.filename for w in record} == {__file__}
    assert settings.app_settings.deployment_config.max_containers == 7


def test_a_section_as_json_under_a_more_specific_variable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever order the environment lists them in, the more specific variable wins.
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS", "5")
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BATCH_CONFIG", '{"max_batch_size": 2, "wait_ms": 1}')
    batch = Settings().app_settings.batch_config
    assert (batch.max_batch_size, batch.wait_ms) == (2, 5)


def test_values_that_are_not_json_are_reported_under_their_variables(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pydantic-settings raises one SettingsError, naming no variable, for the first value it cannot decode.
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BATCH_CONFIG", '{"max_batch_size": ')
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__SERVER_CONFIG__PORT", "x")
    with pytest.raises(ConfigValidationError) as info:
        Settings()
    assert sorted(str(info.value).splitlines()) == [
        "$MODALKIT_APP_SETTINGS__BATCH_CONFIG: app_settings.batch_config: "
        "expected a mapping (got '{\"max_batch_size\": ')",
        "$MODALKIT_APP_SETTINGS__SERVER_CONFIG__PORT: app_settings.server_config.port: expected an integer (got 'x')",
    ]


def test_a_section_may_be_given_as_a_yaml_flow_mapping(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BATCH_CONFIG", "{max_batch_size: 3}")
    assert Settings().app_settings.batch_config.max_batch_size == 3


def test_strings_inside_a_json_value_stay_strings(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_MODEL_SETTINGS__COMMON", '{"note": "123", "n": 4}')
    assert Settings().model_settings.common == {"note": "123", "n": 4}
    assert Settings() == load_settings()


def test_an_error_names_the_source_whose_value_won(
    project: Path, write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = write("x.env", "MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS=5\n")
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS", "-1")
    with pytest.raises(ConfigValidationError) as info:
        Settings(_env_file=env_file)
    [issue] = info.value.issues
    assert issue.file == "$MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS"


def test_a_secrets_file_error_names_the_file(project: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "MODALKIT_APP_SETTINGS").write_text(json.dumps({"batch_config": {"wait_ms": -1}}))
    with pytest.raises(ConfigValidationError) as info:
        Settings(_secrets_dir=secrets)
    [issue] = info.value.issues
    assert (issue.file, issue.key_path) == (str(secrets / "MODALKIT_APP_SETTINGS"), "app_settings.batch_config.wait_ms")


@pytest.mark.parametrize("text", [":memory:", "key: value", "[not, a, list]"])
def test_a_string_field_from_the_environment_keeps_its_text_even_when_it_reads_as_yaml(
    project: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    # `journal_path: ":memory:"` from a variable: YAML reads the bare text as a mapping, but the field takes
    # only a string (or null), so the text is what the user meant.
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__SERVER_CONFIG__JOURNAL_PATH", text)
    assert load_settings().app_settings.server_config.journal_path == text
    assert Settings().app_settings.server_config.journal_path == text


def test_a_field_that_takes_a_list_still_reads_one_from_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__GPU", "[T4, A10G]")
    assert load_settings().app_settings.deployment_config.gpu == ["T4", "A10G"]
