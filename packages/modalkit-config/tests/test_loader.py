"""Loading: files, overlays, environment variables, .env, and the errors each can produce."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modalkit_config import (
    ConfigFileNotFoundError,
    ConfigIssue,
    ConfigSyntaxError,
    ConfigValidationError,
    ModalkitDeprecationWarning,
    Settings,
    load_settings,
    settings_from_dict,
)

Write = Callable[[str, str], Path]

MINIMAL_YAML = """
app_settings:
  app_prefix: demo
model_settings:
  model_entries:
    m: {}
"""


def test_earlier_example_file_validates_and_warns_about_each_deprecated_key(fixtures_dir: Path) -> None:
    path = fixtures_dir / "modalkit.yaml"
    with pytest.warns(ModalkitDeprecationWarning) as record:
        settings = load_settings(path, env={}, env_file=None)
    messages = sorted(str(w.message) for w in record)
    assert messages == [
        f"{path}:18: app_settings.deployment_config.concurrency_limit is deprecated; "
        "use app_settings.deployment_config.max_containers instead",
        f"{path}:19: app_settings.deployment_config.container_idle_timeout is deprecated; "
        "use app_settings.deployment_config.scaledown_window instead",
        f"{path}:9: app_settings.auth_config.auth_header is deprecated; use app_settings.auth_config.header instead",
    ]
    # The warning points at the caller, so users see their own line.
    assert {w.filename for w in record} == {__file__}
    app = settings.app_settings
    assert app.app_prefix == "my-ml-service"
    assert app.auth_config is not None
    assert app.auth_config.ssm_key == "/my-service/api-key"
    assert app.auth_config.header == "x-api-key"
    assert app.build_config.image == "python:3.11-slim"
    assert app.build_config.env == {"MODEL_VERSION": "1.0", "LOG_LEVEL": "INFO"}
    assert app.deployment_config.gpu == "T4"
    assert app.deployment_config.max_containers == 10
    assert app.deployment_config.scaledown_window == 300
    assert app.deployment_config.secure is False
    assert app.batch_config.max_batch_size == 32
    assert app.batch_config.wait_ms == 100
    models = settings.model_settings
    assert models.local_model_repository_folder == str(path.parent / "models")  # relative to the file
    assert models.common == {"device": "cuda", "cache_dir": "./cache"}
    assert models.model_entries == {"my_model": {"model_path": "models/my_model.pt", "batch_size": 16}}


@pytest.mark.parametrize("name", ["guide.yaml", "hardcoded_key.yaml"])
def test_earlier_documented_examples_validate(fixtures_dir: Path, name: str) -> None:
    with pytest.warns(ModalkitDeprecationWarning):
        settings = load_settings(fixtures_dir / name, env={}, env_file=None)
    deployment = settings.app_settings.deployment_config
    assert deployment.concurrency is not None
    assert deployment.max_containers in (5, 10)
    assert deployment.scaledown_window == 300


def test_earlier_llm_tutorial_validates_with_a_volume_below_tmp(fixtures_dir: Path) -> None:
    with pytest.warns(ModalkitDeprecationWarning):
        settings = load_settings(fixtures_dir / "llm.yaml", env={}, env_file=None)
    deployment = settings.app_settings.deployment_config
    assert deployment.volumes == {"/tmp/transformers_cache": "transformers-cache"}
    assert (deployment.max_containers, deployment.scaledown_window, deployment.memory) == (5, 600, 16384)


@pytest.mark.parametrize(
    ("overlay", "prefix", "max_containers", "secure"),
    [("guide_development.yaml", "ml-dev", 1, False), ("guide_production.yaml", "ml-prod", 50, True)],
)
def test_guide_environment_examples_validate_as_overlays(
    fixtures_dir: Path, write: Write, overlay: str, prefix: str, max_containers: int, secure: bool
) -> None:
    models = write("models.yaml", "model_settings:\n  model_entries:\n    m: {}\n")
    with pytest.warns(ModalkitDeprecationWarning, match="concurrency_limit is deprecated"):
        settings = load_settings([models, fixtures_dir / overlay], env={}, env_file=None)
    assert settings.app_settings.app_prefix == prefix
    assert settings.app_settings.deployment_config.max_containers == max_containers
    assert settings.app_settings.deployment_config.secure is secure


def test_guide_example_values_arrive_typed(fixtures_dir: Path) -> None:
    with pytest.warns(ModalkitDeprecationWarning):
        settings = load_settings(fixtures_dir / "guide.yaml", env={}, env_file=None)
    d = settings.app_settings.deployment_config
    assert d.concurrency is not None
    assert d.concurrency.max_inputs == 5
    assert d.cpu == 4.0
    assert d.memory == 8192
    assert d.volumes == {"/mnt/cache": "model-cache-vol"}
    assert d.volume_reload_interval_seconds == 300
    assert [m.type for m in d.mounts] == ["file", "dir"]
    assert d.cloud_bucket_mounts[0].key_prefix == "v1/"
    assert settings.app_settings.build_config.run_commands[1] == "pip install torch torchvision"
    assert settings.app_settings.queue_config.backend == "taskiq"


def test_default_path_is_modalkit_yaml_in_the_working_directory(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("modalkit.yaml", MINIMAL_YAML)
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).app_settings.app_prefix == "demo"


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigFileNotFoundError) as info:
        load_settings(missing, env={}, env_file=None)
    assert info.value.issues == [ConfigIssue(str(missing), "", None, "config file not found")]
    assert str(info.value) == f"{missing}: config file not found"


def test_missing_default_file_says_how_to_name_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigFileNotFoundError) as info:
        load_settings(env={}, env_file=None)
    assert str(info.value) == (
        "modalkit.yaml: config file not found (looked in the working directory; pass a path or set MODALKIT_CONFIG)"
    )


def test_broken_yaml_gives_the_parser_line_and_column(write: Write) -> None:
    path = write(
        "broken.yaml",
        """
        app_settings:
          app_prefix: demo
          batch_config: [1, 2
        model_settings: {}
        """,
    )
    with pytest.raises(ConfigSyntaxError) as info:
        load_settings(path, env={}, env_file=None)
    (issue,) = info.value.issues
    assert issue.file == str(path)
    assert issue.line == 4
    # The wording is the parser's (libyaml or PyYAML's own); the place is what matters.
    assert issue.message.startswith("invalid YAML: ")
    assert "expected ',' or ']'" in issue.message
    assert "(column 15)" in issue.message


def test_duplicate_keys_are_a_syntax_error(write: Write) -> None:
    path = write("dup.yaml", "app_settings:\n  app_prefix: a\n  app_prefix: b\n")
    with pytest.raises(ConfigSyntaxError) as info:
        load_settings(path, env={}, env_file=None)
    assert str(info.value) == f"{path}:3: app_settings.app_prefix: duplicate key (first given on line 2)"


def test_top_level_must_be_a_mapping(write: Write) -> None:
    path = write("list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={}, env_file=None)
    assert (
        str(info.value)
        == f"{path}:1: expected a mapping with app_settings and model_settings at the top level (got a list)"
    )


def test_empty_file_reports_the_missing_sections(write: Write) -> None:
    path = write("empty.yaml", "# nothing yet\n")
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={}, env_file=None)
    assert [str(i) for i in info.value.issues] == [
        f"{path}: app_settings: required key is missing",
        f"{path}: model_settings: required key is missing",
    ]


def test_all_mistakes_are_reported_with_lines_in_file_order(write: Write) -> None:
    path = write(
        "bad.yaml",
        """
        app_settings:
          app_prefix: demo
          batch_config:
            max_batch_size: 5000
            wiat_ms: 10
          deployment_config:
            gpu: 4
            timeout: soon
        model_settings:
          model_entries:
            m: {}
        """,
    )
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={}, env_file=None)
    assert str(info.value).splitlines() == [
        f"{path}:4: app_settings.batch_config.max_batch_size: must be <= 1000 (got 5000)",
        f"{path}:5: app_settings.batch_config.wiat_ms: unknown key 'wiat_ms'; did you mean 'wait_ms'?",
        f"{path}:7: app_settings.deployment_config.gpu: expected a string or a list of strings (got 4)",
        f"{path}:8: app_settings.deployment_config.timeout: expected an integer (got 'soon')",
    ]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(write: Write) -> None:
    path = write("bad.yaml", MINIMAL_YAML + "  banana: 1\n")
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={}, env_file=None)
    assert str(info.value) == (
        f"{path}:6: model_settings.banana: unknown key 'banana'; "
        "expected one of: local_model_repository_folder, common, model_entries"
    )


def test_numbers_where_strings_belong_suggest_quoting(write: Write) -> None:
    path = write(
        "bad.yaml",
        """
        app_settings:
          app_prefix: demo
          build_config:
            python_version: 3.10
        model_settings:
          model_entries:
            m: {}
        """,
    )
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={}, env_file=None)
    assert str(info.value) == (
        f"{path}:4: app_settings.build_config.python_version: expected a string (got 3.1, a number; "
        'quote it in YAML, e.g. "3.10")'
    )


def test_overlays_deep_merge_and_errors_name_the_overlay_that_set_the_value(write: Write) -> None:
    base = write(
        "base.yaml",
        """
        app_settings:
          app_prefix: demo
          batch_config:
            max_batch_size: 8
            wait_ms: 10
          deployment_config:
            gpu: [A100, H100]
            secrets: [a, b]
        model_settings:
          common: {device: cpu, cache_dir: ./cache}
          model_entries:
            m: {threshold: 0.5}
        """,
    )
    prod = write(
        "prod.yaml",
        """
        app_settings:
          batch_config:
            max_batch_size: 64
          deployment_config:
            gpu: T4
            secrets: [c]
        model_settings:
          common: {device: cuda}
        """,
    )
    settings = load_settings([base, prod], env={}, env_file=None)
    assert settings.app_settings.batch_config.max_batch_size == 64
    assert settings.app_settings.batch_config.wait_ms == 10
    assert settings.app_settings.deployment_config.gpu == "T4"
    # Lists are replaced, not appended: an overlay states the whole list.
    assert settings.app_settings.deployment_config.secrets == ["c"]
    assert settings.model_settings.common == {"device": "cuda", "cache_dir": "./cache"}
    assert settings.model_settings.model_entries == {"m": {"threshold": 0.5}}

    bad = write("bad.yaml", "\napp_settings:\n  batch_config:\n    wait_ms: -5\n")
    with pytest.raises(ConfigValidationError) as info:
        load_settings([base, prod, bad], env={}, env_file=None)
    assert str(info.value) == f"{bad}:3: app_settings.batch_config.wait_ms: must be >= 0 (got -5)"


def test_overlay_may_use_the_new_name_over_a_deprecated_base_key(write: Write) -> None:
    base = write("base.yaml", MINIMAL_YAML + "\n").read_text()
    base_path = write(
        "base.yaml", base.replace("app_prefix: demo", "app_prefix: demo\n  deployment_config:\n    keep_warm: 1")
    )
    overlay = write("o.yaml", "app_settings:\n  deployment_config:\n    min_containers: 3\n")
    with pytest.warns(
        ModalkitDeprecationWarning, match="keep_warm is deprecated; use app_settings.deployment_config.min_containers"
    ):
        settings = load_settings([base_path, overlay], env={}, env_file=None)
    assert settings.app_settings.deployment_config.min_containers == 3


def test_old_and_new_key_in_one_file_is_an_error(write: Write) -> None:
    path = write(
        "both.yaml",
        """
        app_settings:
          app_prefix: demo
          deployment_config:
            max_containers: 4
            concurrency_limit: 5
            concurrency: {max_inputs: 2}
            allow_concurrent_inputs: 3
        model_settings:
          model_entries: {m: {}}
        """,
    )
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={}, env_file=None)
    assert str(info.value).splitlines() == [
        f"{path}:5: app_settings.deployment_config.concurrency_limit: 'concurrency_limit' is the deprecated name "
        "of 'max_containers'; give only one of them",
        f"{path}:7: app_settings.deployment_config.allow_concurrent_inputs: 'allow_concurrent_inputs' is the "
        "deprecated name of 'concurrency.max_inputs'; give only one of them",
    ]


def test_modalkit_config_names_comma_separated_overlays(write: Write, tmp_path: Path) -> None:
    write("base.yaml", MINIMAL_YAML)
    write("prod.yaml", "app_settings:\n  app_prefix: prod\n")
    env = {"MODALKIT_CONFIG": f"{tmp_path / 'base.yaml'}, {tmp_path / 'prod.yaml'}"}
    assert load_settings(env=env, env_file=None).app_settings.app_prefix == "prod"


def test_environment_variables_override_files_with_typed_values(write: Write) -> None:
    path = write("m.yaml", MINIMAL_YAML)
    env = {
        "MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE": "8",
        "MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__SECURE": "true",
        "MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__GPU": '["A100", "H100"]',
        "MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__CPU": "2.5",
        "MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__RETRIES": "null",
        "MODALKIT_APP_SETTINGS__BUILD_CONFIG__TAG": "3.10",
        "MODALKIT_APP_SETTINGS__BUILD_CONFIG__ENV__MODEL_VERSION": "1.0",
        "MODALKIT_MODEL_SETTINGS__MODEL_ENTRIES__M__THRESHOLD": "0.75",
        "MODALKIT_MODEL_SETTINGS__COMMON__DEVICE": "cuda",
        # Not part of the settings: other MODALKIT_ variables are left alone.
        "MODALKIT_APP_POSTFIX": "-prod",
        "UNRELATED": "x",
    }
    settings = load_settings(path, env=env, env_file=None)
    app = settings.app_settings
    assert app.batch_config.max_batch_size == 8
    assert app.deployment_config.secure is True
    assert app.deployment_config.gpu == ["A100", "H100"]
    assert app.deployment_config.cpu == 2.5
    assert app.deployment_config.retries is None
    assert app.build_config.tag == "3.10"
    assert app.build_config.env == {"MODEL_VERSION": "1.0"}
    assert settings.model_settings.model_entries == {"m": {"threshold": 0.75}}
    assert settings.model_settings.common == {"device": "cuda"}


def test_environment_keys_match_existing_keys_whatever_their_case(write: Write) -> None:
    path = write("m.yaml", MINIMAL_YAML.replace("m: {}", "MyModel: {size: 1}"))
    settings = load_settings(path, env={"MODALKIT_MODEL_SETTINGS__MODEL_ENTRIES__MYMODEL__SIZE": "2"}, env_file=None)
    assert settings.model_settings.model_entries == {"MyModel": {"size": 2}}


def test_environment_errors_name_the_variable(write: Write) -> None:
    path = write("m.yaml", MINIMAL_YAML)
    env = {"MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE": "5000", "MODALKIT_APP_SETTINGS__NOPE": "1"}
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env=env, env_file=None)
    assert sorted(str(info.value).splitlines()) == [
        "$MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE: app_settings.batch_config.max_batch_size: "
        "must be <= 1000 (got 5000)",
        "$MODALKIT_APP_SETTINGS__NOPE: app_settings.nope: unknown key 'nope'; expected one of: app_prefix, "
        "build_config, deployment_config, batch_config, queue_config, auth_config, proxy_auth, server_config",
    ]


def test_dotenv_is_read_below_the_real_environment(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("modalkit.yaml", MINIMAL_YAML)
    write(
        ".env",
        """
        # local overrides
        export MODALKIT_APP_SETTINGS__BATCH_CONFIG__MAX_BATCH_SIZE=16
        MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS='25'
        MODALKIT_APP_SETTINGS__APP_PREFIX="from-dotenv"  # overridden below
        MODALKIT_APP_SETTINGS__SERVER_CONFIG__PORT=9000 # a comment
        """,
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"MODALKIT_APP_SETTINGS__APP_PREFIX": "from-env"})
    assert settings.app_settings.batch_config.max_batch_size == 16
    assert settings.app_settings.batch_config.wait_ms == 25
    assert settings.app_settings.server_config.port == 9000
    assert settings.app_settings.app_prefix == "from-env"


def test_dotenv_errors_give_its_line(write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write("modalkit.yaml", MINIMAL_YAML)
    write(".env", "OTHER=1\nMODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS=-1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigValidationError) as info:
        load_settings(env={})
    assert str(info.value) == ".env:2: app_settings.batch_config.wait_ms: must be >= 0 (got -1)"


def test_dotenv_may_name_the_config_files(write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write("base.yaml", MINIMAL_YAML)
    write(".env", "MODALKIT_CONFIG=base.yaml\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).app_settings.app_prefix == "demo"


def test_env_file_none_skips_dotenv(write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write("modalkit.yaml", MINIMAL_YAML)
    write(".env", "MODALKIT_APP_SETTINGS__APP_PREFIX=other\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}, env_file=None).app_settings.app_prefix == "demo"


def test_real_environment_is_used_by_default(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write("m.yaml", MINIMAL_YAML)
    monkeypatch.setenv("MODALKIT_APP_SETTINGS__APP_PREFIX", "from-os")
    assert load_settings(path, env_file=None).app_settings.app_prefix == "from-os"


def test_settings_from_dict_reports_like_a_file() -> None:
    data: dict[str, Any] = {"app_settings": {"app_prefix": "x", "batch_config": {"wait_ms": "soon"}}}
    with pytest.raises(ConfigValidationError) as info:
        settings_from_dict(data, source="inline")
    assert [str(i) for i in info.value.issues] == [
        "inline: app_settings.batch_config.wait_ms: expected an integer (got 'soon')",
        "inline: model_settings: required key is missing",
    ]


def test_settings_from_dict_warns_on_deprecated_keys_without_changing_the_input() -> None:
    data: dict[str, Any] = {
        "app_settings": {"app_prefix": "x", "deployment_config": {"keep_warm": 2}},
        "model_settings": {"model_entries": {"m": {}}},
    }
    with pytest.warns(ModalkitDeprecationWarning, match=r"^<dict>: app_settings.deployment_config.keep_warm is"):
        settings = settings_from_dict(data)
    assert settings.app_settings.deployment_config.min_containers == 2
    assert data["app_settings"]["deployment_config"] == {"keep_warm": 2}


def test_models_built_in_python_also_accept_and_warn_on_old_names() -> None:
    from modalkit_config import AuthConfig, DeploymentConfig

    with pytest.warns(ModalkitDeprecationWarning, match="use app_settings.deployment_config.concurrency.max_inputs"):
        deployment = DeploymentConfig.model_validate({"allow_concurrent_inputs": 4})
    assert deployment.concurrency is not None
    assert deployment.concurrency.max_inputs == 4
    with pytest.warns(ModalkitDeprecationWarning, match="use app_settings.auth_config.header"):
        assert AuthConfig.model_validate({"auth_header": "x-key", "api_key_env": "K"}).header == "x-key"


def test_load_settings_returns_settings_that_round_trip(fixtures_dir: Path, tmp_path: Path) -> None:
    shutil.copy(fixtures_dir / "guide.yaml", tmp_path / "g.yaml")
    with pytest.warns(ModalkitDeprecationWarning):
        settings = load_settings(tmp_path / "g.yaml", env={}, env_file=None)
    again = settings_from_dict(settings.model_dump())
    assert isinstance(again, Settings)
    assert again == settings


def test_deprecated_key_through_the_environment_warns_and_maps(write: Write) -> None:
    path = write("m.yaml", MINIMAL_YAML)
    env = {"MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__CONCURRENCY_LIMIT": "7"}
    with pytest.warns(
        ModalkitDeprecationWarning,
        match=r"^\$MODALKIT_APP_SETTINGS__DEPLOYMENT_CONFIG__CONCURRENCY_LIMIT: .*"
        r"use app_settings.deployment_config.max_containers",
    ):
        settings = load_settings(path, env=env, env_file=None)
    assert settings.app_settings.deployment_config.max_containers == 7


def test_whole_section_as_json_with_a_more_specific_variable_on_top(write: Write) -> None:
    path = write("m.yaml", MINIMAL_YAML)
    env = {
        "MODALKIT_APP_SETTINGS__BATCH_CONFIG__WAIT_MS": "5",
        "MODALKIT_APP_SETTINGS__BATCH_CONFIG": '{"max_batch_size": 4, "wait_ms": 1}',
    }
    batch = load_settings(path, env=env, env_file=None).app_settings.batch_config
    assert (batch.max_batch_size, batch.wait_ms) == (4, 5)


def test_malformed_variable_name_is_reported(write: Write) -> None:
    path = write("m.yaml", MINIMAL_YAML)
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={"MODALKIT_APP_SETTINGS____APP_PREFIX": "x"}, env_file=None)
    assert str(info.value) == (
        "$MODALKIT_APP_SETTINGS____APP_PREFIX: "
        "empty key in the variable name: separate keys with exactly two underscores"
    )
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={"MODALKIT_APP_SETTINGS___APP_PREFIX": "x"}, env_file=None)
    assert str(info.value) == (
        "$MODALKIT_APP_SETTINGS___APP_PREFIX: app_settings._app_prefix: unknown key '_app_prefix'; "
        "did you mean 'app_prefix'?"
    )


def test_a_directory_or_no_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileNotFoundError, match="is a directory, not a config file"):
        load_settings(tmp_path, env={}, env_file=None)
    with pytest.raises(ConfigFileNotFoundError, match="no config file given"):
        load_settings([], env={}, env_file=None)


def test_missing_file_named_in_modalkit_config_says_so(tmp_path: Path) -> None:
    env = {"MODALKIT_CONFIG": str(tmp_path / "gone.yaml")}
    with pytest.raises(ConfigFileNotFoundError) as info:
        load_settings(env=env, env_file=None)
    assert str(info.value) == f"{tmp_path / 'gone.yaml'}: config file not found (named in MODALKIT_CONFIG)"


def test_yaml_merge_keys_are_not_duplicates(write: Write) -> None:
    path = write(
        "anchors.yaml",
        """
        defaults: &defaults
          max_batch_size: 4
          wait_ms: 10
        app_settings:
          app_prefix: demo
          batch_config:
            <<: *defaults
            wait_ms: 20
        model_settings:
          model_entries: {m: {}}
        """,
    )
    with pytest.raises(ConfigValidationError) as info:
        load_settings(path, env={}, env_file=None)
    # The anchor's home is not a settings key: that is the only complaint.
    assert [i.key_path for i in info.value.issues] == ["defaults"]
    assert info.value.issues[0].line == 1


def test_issue_formats_without_file_or_line() -> None:
    assert str(ConfigIssue(None, "a.b", None, "bad")) == "a.b: bad"
    assert str(ConfigIssue("f.yaml", "", 3, "bad")) == "f.yaml:3: bad"
    assert str(ConfigIssue("f.yaml", "a", None, "bad")) == "f.yaml: a: bad"


def test_relative_paths_resolve_against_the_file_that_set_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "project" / "modalkit.yaml"
    overlay = tmp_path / "overlays" / "dev.yaml"
    base.parent.mkdir()
    overlay.parent.mkdir()
    base.write_text(MINIMAL_YAML.replace("model_settings:", "model_settings:\n  local_model_repository_folder: models"))
    overlay.write_text(
        "app_settings:\n  deployment_config:\n    mounts:\n"
        "      - {local_path: helper.py, remote_path: /root/helper.py}\n"
        "      - {local_path: /abs/data.txt, remote_path: /root/data.txt}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    settings = load_settings([base, overlay], env={}, env_file=None)

    assert settings.model_settings.local_model_repository_folder == str(base.parent / "models")
    mounts = settings.app_settings.deployment_config.mounts
    assert [m.local_path for m in mounts] == [str(overlay.parent / "helper.py"), "/abs/data.txt"]
    monkeypatch.setenv("MODALKIT_CONFIG", str(base))
    assert Settings(_env_file=None).model_settings.local_model_repository_folder == str(base.parent / "models")


def test_a_relative_journal_path_lands_beside_the_file_that_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "project" / "modalkit.yaml"
    base.parent.mkdir()
    journal = "  app_prefix: demo\n  server_config:\n    journal_path: .modalkit/jobs.sqlite"
    base.write_text(MINIMAL_YAML.replace("  app_prefix: demo", journal))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    settings = load_settings(base, env={}, env_file=None)
    assert settings.app_settings.server_config.journal_path == str(base.parent / ".modalkit" / "jobs.sqlite")

    base.write_text(base.read_text().replace(".modalkit/jobs.sqlite", '":memory:"'))
    assert load_settings(base, env={}, env_file=None).app_settings.server_config.journal_path == ":memory:"
    from_env = {"MODALKIT_APP_SETTINGS__SERVER_CONFIG__JOURNAL_PATH": "jobs.sqlite"}
    assert load_settings(base, env=from_env, env_file=None).app_settings.server_config.journal_path == "jobs.sqlite"


def test_a_relative_path_from_an_environment_variable_stays_relative_to_the_working_directory(write: Write) -> None:
    path = write("modalkit.yaml", MINIMAL_YAML)
    env = {"MODALKIT_MODEL_SETTINGS__LOCAL_MODEL_REPOSITORY_FOLDER": "models"}

    settings = load_settings(path, env=env, env_file=None)

    assert settings.model_settings.local_model_repository_folder == "models"


def test_loaded_settings_say_where_each_key_was_set(write: Write) -> None:
    base = write("base.yaml", "app_settings:\n  app_prefix: d\nmodel_settings:\n  model_entries:\n    m:\n      a: 1\n")
    overlay = write("overlay.yaml", "model_settings:\n  model_entries:\n    m:\n      b: 2\n")
    settings = load_settings([base, overlay], env={"MODALKIT_MODEL_SETTINGS__COMMON__C": "3"}, env_file=None)

    issue = settings.issue_at(("model_settings", "model_entries", "m", "a"), "bad a")
    assert str(issue) == f"{base}:6: model_settings.model_entries.m.a: bad a"
    assert (issue.file, issue.line) == (str(base), 6)
    assert settings.issue_at(("model_settings", "model_entries", "m", "b"), "x").line == 4
    # A key nobody set is reported where its nearest parent was.
    assert settings.issue_at(("model_settings", "model_entries", "m", "zz"), "x").line == 3
    assert settings.issue_at(("model_settings", "common", "c"), "x").file == "$MODALKIT_MODEL_SETTINGS__COMMON__C"
    data = {"app_settings": {"app_prefix": "d"}, "model_settings": {"model_entries": {"m": {}}}}
    from_dict = settings_from_dict(data)
    assert str(from_dict.issue_at(("model_settings", "model_entries", "m"), "x")) == (
        "<dict>: model_settings.model_entries.m: x"
    )


def test_dotenv_is_read_as_pydantic_settings_reads_it(write: Write, tmp_path: Path) -> None:
    """load_settings reads .env through pydantic-settings (python-dotenv): ${VAR} expands, escapes are read."""
    path = write("m.yaml", MINIMAL_YAML)
    env_file = write(
        "x.env",
        'BASE=svc\nMODALKIT_APP_SETTINGS__APP_PREFIX=${BASE}-dev\nMODALKIT_MODEL_SETTINGS__COMMON__NOTE="a\\tb"\n',
    )
    settings = load_settings(path, env={}, env_file=env_file)
    assert settings.app_settings.app_prefix == "svc-dev"
    assert settings.model_settings.common == {"note": "a\tb"}
