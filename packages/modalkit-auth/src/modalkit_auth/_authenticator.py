"""The Authenticator: a FastAPI dependency checking API keys and (locally) Modal proxy auth headers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import ipaddress
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from modalkit_auth._keys import KeyRing, KeySource, validate_keys
from modalkit_auth.errors import AuthConfigError, AuthError

__all__ = ["Authenticator", "ProxyCredentials"]

logger = logging.getLogger("modalkit_auth")

MODAL_KEY_HEADER = "Modal-Key"
_OWNER_PERSON = b"modalkit-owner"  # BLAKE2b personalisation: these digests are not usable as any other hash
MODAL_SECRET_HEADER = "Modal-Secret"  # noqa: S105 - a header name, not a secret
_NOT_AUTHENTICATED = "Not authenticated"
_MAX_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class ProxyCredentials:
    """The ``Modal-Key``/``Modal-Secret`` pair a request must carry when proxy auth is checked locally."""

    key: str = field(repr=False)
    secret: str = field(repr=False)


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _header_parameter(name: str, header: str, scheme: str, description: str) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=Security(APIKeyHeader(name=header, scheme_name=scheme, description=description, auto_error=False)),
        annotation=str | None,
    )


class Authenticator:
    """Checks each request to a protected route; use ``authenticator.dependency`` as a FastAPI dependency.

    Two independent checks, either or both:

    - API keys in ``header`` (case-insensitive, as HTTP header names are): fixed ``keys`` (from the config
      file or an environment variable) or a ``key_source`` (SSM) that :meth:`start` fetches and then refreshes
      in the background every ``cache_ttl_seconds``. A key dropped from the source keeps working for
      ``grace_period_seconds``. Until the first fetch succeeds the authenticator is not :attr:`ready` and
      protected routes answer 503: never open.
    - Modal proxy auth checked locally: ``Modal-Key`` and ``Modal-Secret`` must match ``proxy``. On Modal,
      Modal's own proxy does this check, so pass no ``proxy`` there.

    A failed check is a 401 with a ``WWW-Authenticate`` challenge and the same body whatever was wrong. Keys are
    compared in constant time; a presented key longer than ``max_key_length`` is refused without being hashed or
    compared. Keys are never logged, never echoed, never put in an exception message or a repr.

    Args:
        header: The request header carrying the API key.
        keys: Fixed valid keys (several may be valid at once). Give ``keys`` or ``key_source``, not both.
        key_source: Where keys are fetched from and refreshed (see :class:`KeySource`).
        proxy: The expected ``Modal-Key``/``Modal-Secret``; None leaves proxy auth unchecked.
        cache_ttl_seconds: How long fetched keys are used before they are fetched again.
        grace_period_seconds: How long a key rotated out of ``key_source`` keeps working.
        max_key_length: Longer presented keys are refused without being compared.
        protect_metrics: Whether the app should also put this dependency on ``/metrics`` (the app reads it).
        protect_docs: Whether the app should also put it on ``/openapi.json``, ``/docs`` and ``/redoc``.
        keys_origin: Where ``keys`` came from, for logs and errors (e.g. ``environment variable API_KEYS``).
        development_keys: ``keys`` were written in the config file: :meth:`warn_if_exposed` warns about them.

    Raises:
        AuthConfigError: Nothing to check, both ``keys`` and ``key_source``, or an unusable key.
    """

    def __init__(
        self,
        *,
        header: str = "x-api-key",
        keys: Sequence[str] | None = None,
        key_source: KeySource | None = None,
        proxy: ProxyCredentials | None = None,
        cache_ttl_seconds: float = 300.0,
        grace_period_seconds: float = 3600.0,
        max_key_length: int = 4096,
        protect_metrics: bool = False,
        protect_docs: bool = False,
        keys_origin: str = "the keys given to Authenticator",
        development_keys: bool = False,
    ) -> None:
        if keys is not None and key_source is not None:
            raise AuthConfigError("give the Authenticator either fixed keys or a key source, not both")
        if keys is None and key_source is None and proxy is None:
            raise AuthConfigError("the Authenticator has nothing to check: give keys, a key source or proxy")
        if cache_ttl_seconds <= 0 or grace_period_seconds < 0 or max_key_length < 1:
            raise AuthConfigError(
                "cache_ttl_seconds must be > 0, grace_period_seconds >= 0 and max_key_length >= 1 "
                f"(got {cache_ttl_seconds}, {grace_period_seconds}, {max_key_length})"
            )
        self.header = header
        self.protect_metrics = protect_metrics
        self.protect_docs = protect_docs
        self._ttl = cache_ttl_seconds
        self._max_key_length = max_key_length
        self._source = key_source
        self._origin = key_source.name if key_source is not None else keys_origin
        self._development_keys = development_keys and keys is not None
        self._ring: KeyRing | None = None
        self._ready = False
        if keys is not None or key_source is not None:
            self._ring = KeyRing(grace_period_seconds)
        if keys is not None:
            assert self._ring is not None
            self._ring.replace(validate_keys(keys, keys_origin, max_key_length))
            self._ready = True
        elif key_source is None:
            self._ready = True  # proxy auth only: nothing to fetch
        self._proxy_key: KeyRing | None = None
        self._proxy_secret: KeyRing | None = None
        if proxy is not None:
            self._proxy_key = KeyRing(0)
            self._proxy_key.replace(validate_keys([proxy.key], "the proxy key (Modal-Key)", max_key_length))
            self._proxy_secret = KeyRing(0)
            self._proxy_secret.replace(validate_keys([proxy.secret], "the proxy secret (Modal-Secret)", max_key_length))
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        challenges = []
        if self._ring is not None:
            challenges.append(f'ApiKey header="{header}"')
        if proxy is not None:
            challenges.append(f'ModalProxy key-header="{MODAL_KEY_HEADER}", secret-header="{MODAL_SECRET_HEADER}"')
        self._challenge = ", ".join(challenges)
        # The credential headers, lower-case: a request carrying one of them twice is refused (400), since
        # which copy counts would otherwise depend on the code path reading it.
        names = [header.lower()] if self._ring is not None else []
        if proxy is not None:
            names += [MODAL_KEY_HEADER.lower(), MODAL_SECRET_HEADER.lower()]
        self.credential_headers: tuple[bytes, ...] = tuple(n.encode("latin-1") for n in names)
        # The header that names the caller (job ownership): the API key, or the proxy key without one.
        self._identity_header: bytes | None = self.credential_headers[0] if self.credential_headers else None
        # The FastAPI dependency: ``APIRouter(dependencies=[Depends(authenticator.dependency)])``.
        self.dependency: Callable[..., Awaitable[None]] = self._make_dependency()

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether requests can be checked: keys are loaded (always true for fixed keys and proxy auth only)."""
        return self._ready

    @property
    def api_key_auth(self) -> bool:
        """Whether API keys are checked."""
        return self._ring is not None

    @property
    def proxy_auth(self) -> bool:
        """Whether ``Modal-Key``/``Modal-Secret`` are checked here (False on Modal, where Modal checks them)."""
        return self._proxy_key is not None

    def __repr__(self) -> str:
        parts = []
        if self._ring is not None:
            count = len(self._ring)
            parts.append(f"header={self.header!r}, keys from {self._origin}: {count} key{'' if count == 1 else 's'}")
        parts.append(f"proxy_auth={self.proxy_auth}")
        parts.append(f"ready={self._ready}")
        return f"Authenticator({', '.join(parts)})"

    def warn_if_exposed(self, host: str) -> None:
        """Log a warning when keys written in the config file guard a service reachable beyond this machine.

        The server calls this with the host it binds (``0.0.0.0`` counts as exposed); config-file keys are for
        development, and a real deployment should read them from an environment variable or SSM.
        """
        if self._development_keys and not _is_loopback(host):
            logger.warning(
                "auth_config.api_key holds keys written in the config file, and the service listens on %s, "
                "which is not a loopback address: config-file keys are for development only; "
                "use auth_config.api_key_env or auth_config.ssm_key",
                host,
            )

    # -- background refresh ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch the keys from the key source and start refreshing them in the background.

        Does not raise when the source is unreachable: the authenticator stays not ready (protected routes
        answer 503), the error is logged, and the background task keeps retrying. Calling it again is a no-op.
        """
        if self._source is None or self._task is not None:
            return
        await self._refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="modalkit-auth key refresh")

    async def stop(self) -> None:
        """Stop the background refresh (the keys already loaded stay valid). Calling it again is a no-op."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _retry_delay(self) -> float:
        # Exponential from 0.5 s, capped: a source that comes back is noticed soon, a dead one is not hammered.
        return min(self._ttl, _MAX_RETRY_SECONDS, 0.5 * 2.0 ** min(max(self._failures - 1, 0), 8))

    def _next_delay(self) -> float:
        if self._failures == 0:
            # Up to 10% early, never late, so replicas spread their SSM calls and a rotation lands within one TTL.
            return self._ttl * random.uniform(0.9, 1.0)
        return self._retry_delay()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._next_delay())
            await self._refresh()

    async def _refresh(self) -> None:
        assert self._source is not None
        assert self._ring is not None
        try:
            fetched = await asyncio.to_thread(self._source.fetch)
            keys = validate_keys(fetched, self._origin, self._max_key_length)
        except AuthError as exc:
            self._failed(str(exc))
            return
        except Exception as exc:  # a third-party source's bug must not kill the refresh loop
            # Only the type: the message of an unknown exception could hold anything.
            self._failed(f"{type(exc).__name__} raised by the key source")
            return
        added, retiring = self._ring.replace(keys)
        if not self._ready:
            logger.info("loaded %d API key(s) from %s; auth is ready", len(keys), self._origin)
        elif added or retiring:
            logger.info(
                "API keys from %s changed: %d new, %d rotated out (valid for the grace period)",
                self._origin,
                added,
                retiring,
            )
        self._ready = True
        self._failures = 0

    def _failed(self, reason: str) -> None:
        self._failures += 1
        if self._ready:
            consequence = "the cached keys keep working; retrying"
        else:
            consequence = "auth is not ready, protected routes answer 503; retrying"
        logger.error(
            "could not fetch API keys from %s (attempt %d): %s; %s", self._origin, self._failures, reason, consequence
        )

    # -- the check ---------------------------------------------------------------------------------------------

    def _make_dependency(self) -> Callable[..., Awaitable[None]]:
        # The signature lists only the headers this authenticator checks, as APIKeyHeader schemes, so the
        # OpenAPI document (and /docs' Authorize button) shows exactly what a client must send.
        params = [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
        if self._ring is not None:
            params.append(_header_parameter("api_key", self.header, "ApiKey", "The API key."))
        if self._proxy_key is not None:
            params.append(_header_parameter("modal_key", MODAL_KEY_HEADER, "ModalKey", "Modal proxy auth key."))
            params.append(
                _header_parameter("modal_secret", MODAL_SECRET_HEADER, "ModalSecret", "Modal proxy auth secret.")
            )

        async def authenticate(request: Request, **headers: str | None) -> None:
            self.check_duplicates(request.headers.raw)
            self.check(headers.get("api_key"), headers.get("modal_key"), headers.get("modal_secret"))

        authenticate.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        return authenticate

    def _matches(self, ring: KeyRing, presented: str | None) -> bool:
        if not presented or len(presented) > self._max_key_length:
            return False  # refused before any hashing: bounded work whatever was sent
        return ring.matches(presented.encode("utf-8", "replace"))

    def identity(self, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """Who presents these credentials (raw ASGI headers): a digest of the API key, else of ``Modal-Key``.

        The app ties each async job to it, so a job is shown only to the credential that created it. It is a
        keyed BLAKE2b digest (never the key itself), stable across restarts so journaled jobs keep their owner.
        Meaningful only for a request the check accepted; None when no credential header is present.
        """
        wanted = self._identity_header
        if wanted is None:
            return None
        for name, value in headers:
            if name == wanted:
                if len(value) > self._max_key_length:
                    return None
                return "key:" + hashlib.blake2b(value, digest_size=16, person=_OWNER_PERSON).hexdigest()
        return None

    def check_duplicates(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Refuse a request that carries a credential header more than once (raw ASGI headers, lower-case names).

        Raises:
            fastapi.HTTPException: 400 naming the repeated header (never its values).
        """
        wanted = self.credential_headers
        if not wanted:
            return
        seen: set[bytes] = set()
        for name, _ in headers:
            if name in wanted:
                if name in seen:
                    shown = name.decode("latin-1")
                    raise HTTPException(
                        status_code=400, detail=f"the header {shown} was sent more than once; send it once"
                    )
                seen.add(name)

    def check(self, api_key: str | None, modal_key: str | None = None, modal_secret: str | None = None) -> None:
        """Check presented credentials (``None`` for a missing header); return normally when they are good.

        Raises:
            fastapi.HTTPException: 401 (with ``WWW-Authenticate``) when a credential is missing or wrong,
                503 (with ``Retry-After``) when API keys are not loaded yet.
        """
        if self._proxy_key is not None and self._proxy_secret is not None:
            # Both compared whatever the first gave, so timing does not tell which one was wrong.
            key_ok = self._matches(self._proxy_key, modal_key)
            secret_ok = self._matches(self._proxy_secret, modal_secret)
            if not (key_ok & secret_ok):
                logger.debug("refused a request: proxy auth headers missing or wrong")
                raise self._unauthorized()
        if self._ring is not None:
            if not self._ready:
                logger.debug("refused a request: API keys are not loaded yet")
                raise HTTPException(
                    status_code=503,
                    detail="Authentication is not ready: API keys are not loaded yet",
                    headers={"Retry-After": str(max(1, math.ceil(self._retry_delay())))},
                )
            if not self._matches(self._ring, api_key):
                logger.debug("refused a request: API key %s", "missing" if not api_key else "wrong")
                raise self._unauthorized()

    def _unauthorized(self) -> HTTPException:
        return HTTPException(status_code=401, detail=_NOT_AUTHENTICATED, headers={"WWW-Authenticate": self._challenge})
