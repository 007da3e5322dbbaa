"""Turn modalkit.yaml's ``auth_config``, ``proxy_auth`` and ``deployment_config.secure`` into an Authenticator."""

from __future__ import annotations

import os
import secrets

from modalkit_auth._authenticator import Authenticator, ProxyCredentials
from modalkit_auth._keys import KeySource, parse_keys, validate_keys
from modalkit_auth.errors import AuthConfigError
from modalkit_config import AppSettings, ProxyAuthConfig

__all__ = ["build_authenticator", "new_job_id"]


def new_job_id() -> str:
    """A fresh job id: 192 random bits, URL-safe, so one caller cannot read another's result by guessing."""
    return secrets.token_urlsafe(24)


def _required_env(name: str, setting: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        state = "is not set" if name not in os.environ else "is empty"
        raise AuthConfigError(
            f"deployment_config.secure is true, so requests must carry Modal proxy auth headers, but the "
            f"environment variable {name} named by {setting} {state}; set it to the expected value "
            "(on Modal, the proxy auth token's value)"
        )
    return value


def _proxy_credentials(config: ProxyAuthConfig) -> ProxyCredentials:
    return ProxyCredentials(
        key=_required_env(config.key_env, "app_settings.proxy_auth.key_env"),
        secret=_required_env(config.secret_env, "app_settings.proxy_auth.secret_env"),
    )


def build_authenticator(app_settings: AppSettings, *, on_modal: bool = False) -> Authenticator | None:
    """The authenticator modalkit.yaml asks for, or None when it asks for no auth at all.

    - ``auth_config`` turns on API keys from ``api_key`` (literal, for development), ``api_key_env`` (read now,
      comma-separated for several) or ``ssm_key`` (fetched by :meth:`Authenticator.start`, needs the ``[ssm]``
      extra).
    - ``deployment_config.secure`` turns on Modal proxy auth. Locally the authenticator checks ``Modal-Key`` and
      ``Modal-Secret`` against the environment variables ``proxy_auth.key_env``/``secret_env`` name. On Modal
      (``on_modal=True``) Modal's proxy enforces it (``requires_proxy_auth=True``) and nothing is added here.

    Args:
        app_settings: The ``app_settings`` section.
        on_modal: Running inside Modal, behind Modal's proxy.

    Raises:
        AuthConfigError: A named environment variable is unset or empty, a key is unusable, or no AWS region.
        MissingExtraError: ``ssm_key`` is set and boto3 is not installed.
    """
    auth = app_settings.auth_config
    proxy = None
    if app_settings.deployment_config.secure and not on_modal:
        proxy = _proxy_credentials(app_settings.proxy_auth)
    if auth is None:
        return None if proxy is None else Authenticator(proxy=proxy)

    keys: list[str] | None = None
    source: KeySource | None = None
    origin = "auth_config"
    if auth.api_key is not None:
        origin = "auth_config.api_key"
        literal = [auth.api_key] if isinstance(auth.api_key, str) else list(auth.api_key)
        keys = validate_keys(literal, origin, auth.max_key_length)
    elif auth.api_key_env is not None:
        origin = f"environment variable {auth.api_key_env} (auth_config.api_key_env)"
        if auth.api_key_env not in os.environ:
            raise AuthConfigError(
                f"auth_config.api_key_env names the environment variable {auth.api_key_env}, which is not set; "
                "set it to the API key (several keys may be comma-separated)"
            )
        keys = parse_keys(os.environ[auth.api_key_env], origin, auth.max_key_length)
    elif auth.ssm_key is not None:
        from modalkit_auth.ssm import SsmKeySource

        source = SsmKeySource(auth.ssm_key, region_name=auth.ssm_region, endpoint_url=auth.ssm_endpoint_url)
    return Authenticator(
        header=auth.header,
        keys=keys,
        key_source=source,
        proxy=proxy,
        cache_ttl_seconds=auth.cache_ttl_seconds,
        grace_period_seconds=auth.grace_period_seconds,
        max_key_length=auth.max_key_length,
        protect_metrics=auth.protect_metrics,
        protect_docs=auth.protect_docs,
        keys_origin=origin,
        development_keys=auth.api_key is not None,
    )
