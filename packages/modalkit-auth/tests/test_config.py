"""Building an authenticator from modalkit.yaml settings: clear errors, redacted reprs, the exposure warning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from modalkit_auth import AuthConfigError, Authenticator, AuthError, build_authenticator
from modalkit_config import AppSettings


def settings(auth_config: dict[str, Any]) -> AppSettings:
    return AppSettings.model_validate({"app_prefix": "t", "auth_config": auth_config})


def built(auth_config: dict[str, Any]) -> Authenticator:
    auth = build_authenticator(settings(auth_config))
    assert auth is not None
    return auth


def test_unset_env_var_names_the_variable_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MK_TEST_UNSET", raising=False)
    with pytest.raises(AuthConfigError) as err:
        build_authenticator(settings({"api_key_env": "MK_TEST_UNSET"}))
    assert "MK_TEST_UNSET" in str(err.value)
    assert "auth_config.api_key_env" in str(err.value)
    assert isinstance(err.value, AuthError)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("raw", ["", "   ", ",", " , ,"])
def test_env_var_without_any_key_is_an_error(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MK_TEST_EMPTY", raw)
    with pytest.raises(AuthConfigError, match=r"MK_TEST_EMPTY.*no key"):
        build_authenticator(settings({"api_key_env": "MK_TEST_EMPTY"}))


@pytest.mark.parametrize("bad", ["has space", "tab\there", "caf\u00e9-key", "nul\x00byte", "line\nbreak", "a,b"])
def test_a_key_with_characters_no_header_can_carry_is_refused_without_echoing_it(
    bad: str, new_key: Callable[..., str]
) -> None:
    good = new_key()
    with pytest.raises(AuthConfigError) as err:
        build_authenticator(settings({"api_key": [good, bad]}))
    message = str(err.value)
    assert "key 2 of 2 in auth_config.api_key" in message
    assert bad not in message
    assert good not in message


def test_a_bad_key_in_an_env_var_is_refused_without_echoing_it(
    new_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = new_key()
    monkeypatch.setenv("MK_TEST_BAD", f"{good},has space")
    with pytest.raises(AuthConfigError) as err:
        build_authenticator(settings({"api_key_env": "MK_TEST_BAD"}))
    message = str(err.value)
    assert "key 2 of 2 in environment variable MK_TEST_BAD" in message
    assert "has space" not in message
    assert good not in message


def test_literal_key_with_a_comma_is_refused(new_key: Callable[..., str]) -> None:
    a, b = new_key(), new_key()
    with pytest.raises(AuthConfigError, match=r"auth_config\.api_key") as err:
        build_authenticator(settings({"api_key": f"{a},{b}"}))
    assert a not in str(err.value)


def test_a_key_longer_than_max_key_length_is_refused(new_key: Callable[..., str]) -> None:
    key = new_key()
    with pytest.raises(AuthConfigError, match="max_key_length") as err:
        build_authenticator(settings({"api_key": key, "max_key_length": 8}))
    assert key not in str(err.value)


def test_repr_and_str_show_no_key(new_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    literal_key, env_key = new_key(), new_key()
    monkeypatch.setenv("MK_TEST_REPR", env_key)
    for auth in (built({"api_key": literal_key}), built({"api_key_env": "MK_TEST_REPR"})):
        text = repr(auth) + str(auth) + repr(vars(auth))
        assert literal_key not in text
        assert env_key not in text
        assert "Authenticator(" in repr(auth)
        assert "1 key" in repr(auth)


def test_literal_key_on_a_non_loopback_host_warns(
    new_key: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    auth = built({"api_key": new_key()})
    with caplog.at_level(logging.WARNING, logger="modalkit_auth"):
        for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
            auth.warn_if_exposed(host)
        assert not caplog.records
        for host in ("0.0.0.0", "10.1.2.3", "::", "example.com"):
            auth.warn_if_exposed(host)
    assert len(caplog.records) == 4
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert "auth_config.api_key" in caplog.records[0].getMessage()
    assert "0.0.0.0" in caplog.records[0].getMessage()


def test_keys_from_the_environment_never_warn_about_exposure(
    new_key: Callable[..., str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MK_TEST_ENV_KEY", new_key())
    auth = built({"api_key_env": "MK_TEST_ENV_KEY"})
    with caplog.at_level(logging.WARNING, logger="modalkit_auth"):
        auth.warn_if_exposed("0.0.0.0")
    assert not caplog.records


def test_an_authenticator_with_nothing_to_check_is_refused() -> None:
    with pytest.raises(AuthConfigError, match="nothing to check"):
        Authenticator()


def test_an_authenticator_with_both_fixed_keys_and_a_source_is_refused(new_key: Callable[..., str]) -> None:
    class Source:
        name = "test source"

        def fetch(self) -> list[str]:
            return []

    with pytest.raises(AuthConfigError, match="either"):
        Authenticator(keys=[new_key()], key_source=Source())
