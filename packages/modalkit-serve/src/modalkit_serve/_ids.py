"""Identifiers for jobs and requests."""

from __future__ import annotations

import itertools
import os
import re

from modalkit_auth import new_job_id as _auth_new_job_id

# A request id we accept from a client: printable token characters only (no spaces, quotes, CR/LF, so it can
# never inject a header or break a log line), bounded in length.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-/+=@]{1,128}")


# The auth package owns the job-id format: a job id is the only thing between a caller and someone else's result,
# so it must be unguessable.
new_job_id = _auth_new_job_id


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
