"""Identifiers for jobs and requests."""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import Callable

# A request id we accept from a client: printable token characters only (no spaces, quotes, CR/LF, so it can
# never inject a header or break a log line), bounded in length.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-/+=@]{1,128}")


def _default_job_id() -> str:
    return secrets.token_urlsafe(24)


def _pick_job_id_factory() -> Callable[[], str]:
    # The auth package owns the job-id format when it provides one (ids that are hard to guess: a job id is the
    # only thing standing between a caller and someone else's result).
    try:
        from modalkit_auth import new_job_id  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return _default_job_id
    return new_job_id  # type: ignore[no-any-return,unused-ignore]


new_job_id: Callable[[], str] = _pick_job_id_factory()


class RequestIds:
    """Cheap unique request ids: a random per-process prefix and a counter (no syscall per request)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def new(self) -> str:
        """A new id, unique within this process and very likely across processes."""
        return f"{self._prefix}-{next(self._counter):x}"


def sane_request_id(raw: bytes) -> str | None:
    """The client's request id if it is a sane token, else None (the caller generates one)."""
    if _SAFE_REQUEST_ID.fullmatch(raw) is None:
        return None
    return raw.decode("ascii")
