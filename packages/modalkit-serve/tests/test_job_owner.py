"""A job's status is answered only to the caller that created it, also after a restart from the journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from modalkit_pipeline import AsyncInputModel
from modalkit_queue import MemoryBackend
from modalkit_serve import LocalRunner
from modalkit_serve._asgi import RequestInfo
from modalkit_serve._jobs import JobView
from serve_support import ToyInput, ToyPipeline, toy_settings


def _caller(owner: str | None) -> RequestInfo:
    info = RequestInfo("request")
    info.owner = owner
    return info


def test_only_the_owner_reads_a_job_in_memory_and_after_a_restart(tmp_path: Path) -> None:
    settings = toy_settings(journal_path=str(tmp_path / "jobs.sqlite"))
    request = AsyncInputModel[ToyInput](message=ToyInput(text="abc"), success_queue="out")

    async def scenario() -> tuple[list[JobView | None], list[JobView | None]]:
        first = LocalRunner(ToyPipeline, settings, queue_backend=MemoryBackend())
        await first.start()
        assert await first.wait_ready()
        job_id = await first.submit_async("toy", request, _caller("owner-a"))
        before = [await first.job_status(job_id, _caller(who)) for who in ("owner-a", "owner-b", None)]
        await first.stop()
        second = LocalRunner(ToyPipeline, settings, queue_backend=MemoryBackend())
        await second.start()
        assert await second.wait_ready()
        after = [await second.job_status(job_id, _caller(who)) for who in ("owner-a", "owner-b", None)]
        await second.stop()
        return before, after

    before, after = asyncio.run(scenario())
    for views in (before, after):
        mine, theirs, anonymous = views
        assert mine is not None
        assert theirs is None
        assert anonymous is None


def test_a_job_without_an_owner_is_read_by_callers_without_one() -> None:
    request = AsyncInputModel[ToyInput](message=ToyInput(text="abc"), success_queue="")

    async def scenario() -> tuple[JobView | None, JobView | None]:
        runner = LocalRunner(ToyPipeline, toy_settings(), queue_backend=MemoryBackend())
        await runner.start()
        assert await runner.wait_ready()
        job_id = await runner.submit_async("toy", request)
        views = await runner.job_status(job_id), await runner.job_status(job_id, _caller("someone"))
        await runner.stop()
        return views

    open_view, keyed_view = asyncio.run(scenario())
    assert open_view is not None
    assert keyed_view is None
