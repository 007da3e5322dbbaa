"""The job store behind ``GET /jobs/{job_id}``: bounded in size, finished jobs expire after a TTL."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections import deque
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from pydantic import BaseModel

from modalkit_pipeline import AsyncInputModel, ItemError, is_failure

__all__ = ["Job", "JobState", "JobStatus", "JobStore", "JobView", "job_status_json", "same_owner"]

logger = logging.getLogger("modalkit.jobs")

OutT = TypeVar("OutT", bound=BaseModel)

JobState = Literal["pending", "running", "success", "error"]


class JobStatus(BaseModel, Generic[OutT]):
    """The answer of ``GET /jobs/{job_id}``."""

    job_id: str
    """The job's id, as returned by ``POST /predict_async``."""
    status: JobState
    """``pending`` (queued), ``running`` (in a batch), ``success`` or ``error``."""
    result: OutT | ItemError | None = None
    """The output (or the error) once the job has finished; ``null`` before."""


class JobView(NamedTuple):
    """What a runner reports about one job (``GET /jobs/{job_id}``)."""

    job_id: str
    status: JobState
    result: BaseModel | None


class Job:
    """One accepted async request and what became of it.

    ``owner`` is the identity of the caller that created it (`RequestInfo.owner`); only that caller may read it.
    """

    __slots__ = ("job_id", "model_name", "owner", "request", "result", "status")

    def __init__(self, job_id: str, model_name: str, request: AsyncInputModel[Any], owner: str | None = None) -> None:
        self.job_id = job_id
        self.model_name = model_name
        self.request = request
        self.owner = owner
        self.status: JobState = "pending"
        self.result: BaseModel | None = None

    def finish(self, result: BaseModel) -> None:
        """Set the result and the final status (from any thread: two attribute writes, in this order)."""
        failed = is_failure(result)
        self.result = result
        self.status = "error" if failed else "success"

    def view(self) -> JobView:
        """A snapshot for ``GET /jobs/{job_id}``."""
        return JobView(self.job_id, self.status, self.result)


def same_owner(owner: str | None, caller: str | None) -> bool:
    """Whether ``caller`` may read a job ``owner`` created: the same identity, or both without one."""
    if owner is None or caller is None:
        return owner is caller
    return hmac.compare_digest(owner, caller)


def job_status_json(job_id: str, status: JobState, result: BaseModel | None) -> bytes:
    """The `JobStatus` JSON for a job (the result serialised as its own model, not as the declared union)."""
    body = b"null" if result is None else type(result).__pydantic_serializer__.to_json(result)
    return b'{"job_id":%s,"status":"%s","result":%s}' % (json.dumps(job_id).encode(), status.encode(), body)


class JobStore:
    """Jobs by id. Finished jobs are kept ``ttl_seconds``; at most ``max_jobs`` are kept at all.

    Used from the event loop thread only.

    Args:
        ttl_seconds: How long a finished job stays readable.
        max_jobs: The most jobs kept; when full, the oldest finished job goes first (then the oldest at all:
            it is still delivered to its queue, only its status can no longer be read).
    """

    def __init__(self, ttl_seconds: float, max_jobs: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_jobs = max_jobs
        self._jobs: dict[str, Job] = {}
        # Finished jobs in the order they finished; with one TTL for all, that is also expiry order.
        self._expiry: deque[tuple[float, Job]] = deque()

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Job) -> None:
        """Keep a new job, making room first."""
        self._purge(time.monotonic())
        while len(self._jobs) >= self.max_jobs:
            self._evict_one()
        self._jobs[job.job_id] = job

    def get(self, job_id: str) -> Job | None:
        """The job, or None if unknown or expired."""
        self._purge(time.monotonic())
        return self._jobs.get(job_id)

    def finish(self, job: Job, result: BaseModel) -> None:
        """Record a job's result; it expires ``ttl_seconds`` from now."""
        job.finish(result)
        self._expiry.append((time.monotonic() + self.ttl_seconds, job))

    def _purge(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, job = expiry.popleft()
            if self._jobs.get(job.job_id) is job:
                del self._jobs[job.job_id]

    def _evict_one(self) -> None:
        while self._expiry:
            _, job = self._expiry.popleft()
            if self._jobs.get(job.job_id) is job:
                del self._jobs[job.job_id]
                return
        oldest = next(iter(self._jobs))
        logger.warning("job store full (%d jobs); forgetting the status of unfinished job %s", self.max_jobs, oldest)
        del self._jobs[oldest]
