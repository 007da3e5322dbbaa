"""Async job ids on Modal: the id travels inside the spawned input, and a job index finds its FunctionCall.

Why the id is not the FunctionCall id: a ``@modal.batched`` method learns only the first input's call id
(``modal.current_function_call_id()``), so in a batch of several inputs the others could not be told which job
they are. So the web function makes the job id itself (`modalkit_auth.new_job_id`), sends it inside the request
(`AsyncJobInput`), and the container delivers the result under exactly that id, on every retry of the input too.

``GET /jobs/{job_id}`` still needs the FunctionCall to poll: the web function records ``job_id -> call id`` in a
`JobIndex` before it answers 202. On Modal that is a ``modal.Dict`` (`ModalDictJobIndex`); tests and local tools
use `MemoryJobIndex`.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

from modalkit_pipeline import AsyncInputModel

if TYPE_CHECKING:
    import modal

__all__ = [
    "JOB_ID_PATTERN",
    "AsyncJobInput",
    "JobIndex",
    "MemoryJobIndex",
    "ModalDictJobIndex",
    "is_job_id",
    "job_index_name",
]

#: What a job id may look like: modalkit makes URL-safe ids of 32 characters; the bound keeps path tricks and
#: oversized keys away from the index. The same rule as the serve package's ``/jobs/{job_id}`` route.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)

# Modal object names: letters, digits, '-', '_', '.', at most 64 characters.
_MAX_MODAL_NAME = 64
_INDEX_SUFFIX = "-jobs"

T = TypeVar("T", bound=BaseModel)


def is_job_id(value: str) -> bool:
    """Whether ``value`` is a well-formed job id (see `JOB_ID_PATTERN`)."""
    return _JOB_ID.fullmatch(value) is not None


class AsyncJobInput(AsyncInputModel[T], Generic[T]):
    """An `AsyncInputModel` that carries its job id to the container.

    ``create_web_endpoints`` spawns these; ``process_request`` delivers the result under ``job_id`` (an
    `AsyncInputModel` without one gets a new id each time it runs). The id is not part of dumps
    (``exclude=True``), so ``original_message`` in a failure message is the request as the client sent it; it is
    still pickled with the request, which is how it reaches the container.
    """

    job_id: str = Field(pattern=JOB_ID_PATTERN, exclude=True)
    """The id the client got in ``202 {job_id}``; the queued result carries exactly this id."""


class JobIndex(Protocol):
    """Where the web function records which FunctionCall runs each job."""

    async def put(self, job_id: str, call_id: str) -> None:
        """Record that ``job_id`` runs as the FunctionCall ``call_id``."""

    async def get(self, job_id: str) -> str | None:
        """The FunctionCall id of ``job_id``, or ``None`` when the job is unknown."""


class MemoryJobIndex:
    """A `JobIndex` in this process's memory (tests, and tools that run the web side in one process)."""

    def __init__(self) -> None:
        self._calls: dict[str, str] = {}

    async def put(self, job_id: str, call_id: str) -> None:
        """Record ``job_id -> call_id``."""
        self._calls[job_id] = call_id

    async def get(self, job_id: str) -> str | None:
        """The recorded call id, or ``None``."""
        return self._calls.get(job_id)


class ModalDictJobIndex:
    """The `JobIndex` on Modal: a ``modal.Dict`` shared by every web container of the app.

    The Dict handle is made on first use (so nothing is built at import or start-up), with
    ``create_if_missing=True``, so a new deployment needs no set-up. Modal drops a Dict entry after 7 days
    without reads or writes; an expired job is then unknown (404).

    Args:
        name: The Dict's name; `job_index_name` derives it from the app name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._dict: modal.Dict | None = None

    @property
    def modal_dict(self) -> modal.Dict:
        """The ``modal.Dict`` handle (hydrated by Modal on its first call)."""
        if self._dict is None:
            import modal

            self._dict = modal.Dict.from_name(self.name, create_if_missing=True)
        return self._dict

    async def put(self, job_id: str, call_id: str) -> None:
        """Record ``job_id -> call_id`` in the Dict."""
        await self.modal_dict.put.aio(job_id, call_id)

    async def get(self, job_id: str) -> str | None:
        """The call id recorded for ``job_id``, or ``None``."""
        value: Any = await self.modal_dict.get.aio(job_id)
        return value if isinstance(value, str) else None


def index_entry(call_id: str, owner: str | None) -> str:
    """The job index's value for a job: its FunctionCall id, preceded by its owner's identity when it has one."""
    return call_id if owner is None else f"{owner} {call_id}"


def read_index_entry(entry: str) -> tuple[str, str | None]:
    """(FunctionCall id, owner) from a job index value written by `index_entry`."""
    owner, sep, call_id = entry.rpartition(" ")
    return (call_id, owner) if sep else (entry, None)


def job_index_name(app_name: str) -> str:
    """The job index Dict's name for an app: ``<app_name>-jobs``.

    Modal names are at most 64 characters; a longer result keeps the app name's start and a hash of all of it,
    so it stays unique per app.
    """
    name = app_name + _INDEX_SUFFIX
    if len(name) <= _MAX_MODAL_NAME:
        return name
    digest = hashlib.sha256(app_name.encode()).hexdigest()[:8]
    keep = _MAX_MODAL_NAME - len(_INDEX_SUFFIX) - len(digest) - 1
    return f"{app_name[:keep]}-{digest}{_INDEX_SUFFIX}"
