"""Errors raised by modalkit-auth.

The tree::

    AuthError(Exception)                    root of every modalkit-auth error
    ├── AuthConfigError(AuthError, ValueError)
    │                                       the auth settings cannot work: an unset environment variable, a key
    │                                       no HTTP header can carry, nothing to check (raised at start-up)
    ├── KeySourceError                      keys could not be fetched (e.g. SSM unreachable); the service stays
    │                                       not ready, or keeps its cached keys, and retries
    └── MissingExtraError(AuthError, ImportError)
                                            an optional library is not installed; the message has the pip command

No message ever contains key material: errors name the setting, the environment variable or the SSM parameter,
and count keys ("key 2 of 3") instead of showing them.
"""

from __future__ import annotations

__all__ = ["AuthConfigError", "AuthError", "KeySourceError", "MissingExtraError"]


class AuthError(Exception):
    """Root of every modalkit-auth error."""


class AuthConfigError(AuthError, ValueError):
    """The auth settings cannot work; the message names the setting and says what to change."""


class KeySourceError(AuthError):
    """Keys could not be fetched from their source (the message names the source, never a key)."""


class MissingExtraError(AuthError, ImportError):
    """An optional dependency is not installed.

    Attributes:
        extra: The modalkit-auth extra that provides it, e.g. ``ssm``.
    """

    def __init__(self, library: str, extra: str, purpose: str) -> None:
        self.extra = extra
        super().__init__(f'{purpose} needs {library}, which is not installed: pip install "modalkit-auth[{extra}]"')
