"""Key parsing and the key ring: the set of keys valid right now, compared in constant time.

The ring never keeps a key as text. It keeps an HMAC-SHA256 of each key under a random per-process secret, so
every comparison is between two 32-byte digests (equal lengths: nothing leaks through length), and a digest
that ends up somewhere it should not (a core dump, a debugger) cannot be checked against guesses offline.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from modalkit_auth.errors import AuthConfigError

__all__ = ["KeyRing", "KeySource", "parse_keys"]


@runtime_checkable
class KeySource(Protocol):
    """Somewhere keys can be fetched from again and again (SSM); the authenticator refreshes from it.

    ``fetch`` may block (network): the authenticator calls it in a worker thread. It returns every key valid
    now and raises :class:`~modalkit_auth.KeySourceError` (saying what failed, never a key) when it cannot.
    """

    @property
    def name(self) -> str:
        """Where the keys come from, for logs and errors (e.g. ``SSM parameter /svc/api-key``)."""
        ...

    def fetch(self) -> list[str]:
        """Every key valid now."""
        ...


def _bad_character(key: str) -> bool:
    # A header value can carry printable ASCII; spaces would be trimmed by HTTP parsers, commas separate keys.
    return any(not ("!" <= ch <= "~") or ch == "," for ch in key)


def validate_keys(keys: Sequence[str], where: str, max_key_length: int) -> list[str]:
    """Check keys can be sent in a header and accepted; the error counts keys, never shows one.

    Args:
        keys: The keys, already split.
        where: Where they came from, for the error (``auth_config.api_key``, ``environment variable X``).
        max_key_length: Longer keys could never be accepted, so they are a configuration error.

    Raises:
        AuthConfigError: When there is no key or one key is unusable.
    """
    if not keys:
        raise AuthConfigError(f"{where} holds no key; give at least one (several may be comma-separated)")
    for index, key in enumerate(keys, start=1):
        which = f"key {index} of {len(keys)} in {where}"
        if _bad_character(key):
            raise AuthConfigError(
                f"{which} contains a space, a comma or a character that is not printable ASCII; "
                "keys must be printable ASCII without spaces (commas separate keys)"
            )
        if len(key) > max_key_length:
            raise AuthConfigError(
                f"{which} is {len(key)} characters long, more than auth_config.max_key_length "
                f"({max_key_length}); it could never be accepted: raise max_key_length or use a shorter key"
            )
    return list(keys)


def parse_keys(raw: str, where: str, max_key_length: int) -> list[str]:
    """Split a comma-separated list of keys (surrounding spaces and empty entries ignored) and validate it."""
    return validate_keys([part.strip() for part in raw.split(",") if part.strip()], where, max_key_length)


class KeyRing:
    """The keys valid now: the current set, plus keys rotated out that are still inside their grace period.

    Not thread-safe: the authenticator reads and replaces it on the event loop only.

    Args:
        grace_period_seconds: How long a key dropped by :meth:`replace` keeps working.
        clock: Monotonic seconds; a parameter so the ring can be driven without sleeping.
    """

    def __init__(self, grace_period_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._pepper = os.urandom(32)
        self._grace = grace_period_seconds
        self._clock = clock
        self._current: frozenset[bytes] = frozenset()
        self._retiring: dict[bytes, float] = {}  # digest -> monotonic deadline
        # Every digest to compare against, in one tuple swapped atomically on change.
        self._entries: tuple[tuple[bytes, float], ...] = ()

    def _digest(self, key: bytes) -> bytes:
        return hmac.new(self._pepper, key, hashlib.sha256).digest()

    def replace(self, keys: Iterable[str]) -> tuple[int, int]:
        """Make ``keys`` the current set; keys no longer in it keep working for the grace period.

        Returns:
            How many keys are new, and how many started their grace period.
        """
        now = self._clock()
        new = frozenset(self._digest(k.encode("ascii")) for k in keys)
        added = len(new - self._current)
        dropped = self._current - new
        retiring = {d: t for d, t in self._retiring.items() if t > now and d not in new}
        if self._grace > 0:
            retiring.update(dict.fromkeys(dropped, now + self._grace))
        self._current = new
        self._retiring = retiring
        forever = float("inf")
        self._entries = tuple((d, forever) for d in new) + tuple(retiring.items())
        return added, len(dropped) if self._grace > 0 else 0

    def __len__(self) -> int:
        return len(self._current)

    def matches(self, presented: bytes) -> bool:
        """Whether ``presented`` is a valid key, in time that depends only on how many keys the ring holds.

        The caller bounds ``len(presented)`` first (max_key_length), so hashing it is bounded work too.
        """
        digest = self._digest(presented)
        now = self._clock()
        found = False
        # No early exit: every entry is compared whatever the outcome, so timing does not tell which key matched.
        for entry, deadline in self._entries:
            found |= hmac.compare_digest(digest, entry) & (deadline > now)
        return found

    def __repr__(self) -> str:
        return f"KeyRing({len(self._current)} current, {len(self._retiring)} retiring)"
