"""API keys from an AWS SSM parameter (the ``[ssm]`` extra: boto3).

boto3 is imported when an :class:`SsmKeySource` is built, never when this module is imported.

botocore logs every response body at DEBUG (``botocore.parsers``), and the body of ``GetParameter`` with
decryption is the key itself. So while a fetch runs, a filter on that one logger drops the records the fetching
thread writes: with logging at DEBUG everywhere, the key still reaches no log. The filter is added when the first
source is built and touches no other logger or thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modalkit_auth.errors import AuthConfigError, KeySourceError, MissingExtraError

if TYPE_CHECKING:
    from types_boto3_ssm import SSMClient

__all__ = ["SsmKeySource"]

logger = logging.getLogger("modalkit_auth.ssm")

_fetching = threading.local()


class _DropWhileFetching(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_fetching, "active", False)


_DROP_WHILE_FETCHING = _DropWhileFetching()
_BOTOCORE_BODY_LOGGER = "botocore.parsers"


def _hide_response_bodies() -> None:
    target = logging.getLogger(_BOTOCORE_BODY_LOGGER)
    if _DROP_WHILE_FETCHING not in target.filters:
        target.addFilter(_DROP_WHILE_FETCHING)


@contextmanager
def _fetching_now() -> Iterator[None]:
    _fetching.active = True
    try:
        yield
    finally:
        _fetching.active = False


class SsmKeySource:
    """Reads keys from one SSM parameter, a SecureString read with decryption (comma-separated for several).

    Args:
        parameter_name: The parameter name, e.g. ``/my-service/api-key``.
        region_name: The AWS region; None uses the AWS SDK's usual lookup (``AWS_REGION``, profile, ...).
        endpoint_url: A custom endpoint (a local moto, a VPC endpoint); None uses AWS (or ``AWS_ENDPOINT_URL``).
        connect_timeout: Seconds to connect before a fetch fails.
        read_timeout: Seconds to wait for an answer before a fetch fails.
        max_attempts: Attempts per fetch, retries included (the authenticator also retries failed fetches).

    Raises:
        MissingExtraError: boto3 is not installed.
        AuthConfigError: No AWS region can be found, or the client cannot be built.
    """

    def __init__(
        self,
        parameter_name: str,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        max_attempts: int = 2,
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, NoRegionError
        except ImportError as exc:
            raise MissingExtraError("boto3", "ssm", "Reading API keys from AWS SSM (auth_config.ssm_key)") from exc
        self._parameter = parameter_name
        self._region = region_name
        self._endpoint = endpoint_url
        self._warned_type = False
        _hide_response_bodies()
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
        )
        try:
            # A session of our own: boto3's default session is not safe to share between threads.
            self._client: SSMClient = boto3.session.Session().client(
                "ssm", region_name=region_name, endpoint_url=endpoint_url, config=config
            )
        except NoRegionError as exc:
            raise AuthConfigError(
                f"auth_config.ssm_key ({parameter_name}): no AWS region is configured; "
                "set auth_config.ssm_region or the AWS_REGION environment variable"
            ) from exc
        except (BotoCoreError, ValueError) as exc:
            raise AuthConfigError(f"auth_config.ssm_key ({parameter_name}): cannot build an SSM client: {exc}") from exc

    @property
    def name(self) -> str:
        """``SSM parameter <name>``, for logs and errors."""
        return f"SSM parameter {self._parameter}"

    def __repr__(self) -> str:
        return f"SsmKeySource({self._parameter!r}, region_name={self._region!r}, endpoint_url={self._endpoint!r})"

    def fetch(self) -> list[str]:
        """Read the parameter (blocking; the authenticator calls it in a worker thread).

        Returns:
            The keys in the value, split on commas, surrounding spaces and empty entries dropped.

        Raises:
            KeySourceError: SSM cannot be reached or refuses (the message has the error code, never the value).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with _fetching_now():
                response = self._client.get_parameter(Name=self._parameter, WithDecryption=True)
        except ClientError as exc:
            error: dict[str, Any] = dict(exc.response.get("Error", {}))
            code, message = error.get("Code", "error"), error.get("Message", "")
            raise KeySourceError(f"SSM GetParameter {self._parameter} failed: {code}: {message}") from exc
        except BotoCoreError as exc:
            raise KeySourceError(f"SSM GetParameter {self._parameter} failed: {exc}") from exc
        parameter = response["Parameter"]
        if parameter.get("Type") != "SecureString" and not self._warned_type:
            self._warned_type = True
            logger.warning(
                "%s is a %s, not a SecureString: it is stored unencrypted; store API keys as a SecureString",
                self.name,
                parameter.get("Type"),
            )
        value = parameter.get("Value", "")
        return [part.strip() for part in value.split(",") if part.strip()]
