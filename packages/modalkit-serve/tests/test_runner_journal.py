"""The local runner writes every async job to the journal before it answers, and records each transition."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from modalkit_pipeline import AsyncInputModel
from modalkit_queue import MemoryBackend
from modalkit_serve import LocalRunner
from modalkit_serve._jobs import JobView
from modalkit_serve._journal import JobJournal
from serve_support import ToyInput, ToyPipeline, toy_settings


def test_jobs_are_journaled_before_accept_returns_and_marked_delivered(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    backend = MemoryBackend()
    runner = LocalRunner(ToyPipeline, toy_settings(journal_path=str(path)), queue_backend=backend)

    async def scenario() -> list[str]:
        await runner.start()
        assert await runner.wait_ready()
        runner.worker("toy").pipeline.gate.clear()  # type: ignore[attr-defined]
        request = AsyncInputModel[ToyInput](message=ToyInput(text="block"), success_queue="out")
        ids = [await runner.submit_async("toy", request)]
        assert runner.journal is not None
        row = runner.journal.get(ids[0])
        assert row is not None
        assert row.state in ("accepted", "running")
        runner.worker("toy").pipeline.gate.set()  # type: ignore[attr-defined]
        for i in range(20):
            ids.append(
                await runner.submit_async(
                    "toy", AsyncInputModel[ToyInput](message=ToyInput(text=f"j{i}"), success_queue="out")
                )
            )
        await runner.stop()
        return ids

    ids = asyncio.run(scenario())
    journal = JobJournal(path)  # the runner released the lock at stop
    try:
        rows = [journal.get(i) for i in ids]
        assert [r.state if r else None for r in rows] == ["delivered"] * len(ids)
        assert all(r is not None and r.result is not None and "upper" in r.result for r in rows)
    finally:
        journal.close()
    assert len(backend.messages("out")) == len(ids)


def test_a_restart_replays_unfinished_jobs_with_their_ids_and_answers_their_status(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    settings = toy_settings(journal_path=str(path))

    async def scenario() -> tuple[list[str], MemoryBackend, list[JobView | None]]:
        crashed = LocalRunner(ToyPipeline, settings, queue_backend=MemoryBackend())
        await crashed.start()
        assert await crashed.wait_ready()
        gate = crashed.worker("toy").pipeline.gate  # type: ignore[attr-defined]
        gate.clear()
        ids = [
            await crashed.submit_async("toy", AsyncInputModel[ToyInput](message=ToyInput(text=t), success_queue="out"))
            for t in ("block", "a", "b")
        ]
        assert crashed.journal is not None
        crashed.journal.close()  # the process dies here: only the journal survives
        backend = MemoryBackend()
        restarted = LocalRunner(ToyPipeline, settings, queue_backend=backend)
        await restarted.start()
        assert await restarted.wait_ready()
        views = [await restarted.job_status(i) for i in ids]
        await restarted.stop()
        gate.set()
        await crashed.stop()
        return ids, backend, views

    ids, backend, views = asyncio.run(scenario())
    delivered = {json.loads(m)["job_id"] for m in backend.messages("out")}
    assert delivered == set(ids)
    assert all(v is not None for v in views)


def test_status_answers_after_a_clean_restart_until_the_ttl(tmp_path: Path) -> None:
    settings = toy_settings(journal_path=str(tmp_path / "jobs.sqlite"))

    async def scenario() -> object:
        first = LocalRunner(ToyPipeline, settings, queue_backend=MemoryBackend())
        await first.start()
        assert await first.wait_ready()
        job_id = await first.submit_async(
            "toy", AsyncInputModel[ToyInput](message=ToyInput(text="abc"), success_queue="out")
        )
        await first.stop()
        second = LocalRunner(ToyPipeline, settings, queue_backend=MemoryBackend())
        await second.start()
        assert await second.wait_ready()
        view = await second.job_status(job_id)
        await second.stop()
        return view

    view = asyncio.run(scenario())
    assert view is not None
    assert view.status == "success"  # type: ignore[attr-defined]
    assert getattr(view.result, "upper", None) == "ABC"  # type: ignore[attr-defined]


def test_a_job_whose_caller_left_during_the_commit_still_runs(tmp_path: Path) -> None:
    # The row is in the journal once the commit lands, whether or not the client waited for its 202: it must
    # run now, not only after the next restart.
    backend = MemoryBackend()
    runner = LocalRunner(ToyPipeline, toy_settings(journal_path=str(tmp_path / "jobs.sqlite")), queue_backend=backend)

    async def scenario() -> None:
        await runner.start()
        assert await runner.wait_ready()
        request = AsyncInputModel[ToyInput](message=ToyInput(text="gone"), success_queue="out")
        caller = asyncio.ensure_future(runner.submit_async("toy", request))
        await asyncio.sleep(0)  # the caller is now waiting for the commit
        caller.cancel()
        for _ in range(200):
            if backend.messages("out"):
                break
            await asyncio.sleep(0.01)
        await runner.stop()

    asyncio.run(scenario())
    assert [json.loads(m)["upper"] for m in backend.messages("out")] == ["GONE"]


class _CheckingSender:
    """A sender that notes, as each result reaches it, what `GET /jobs` and the journal say about that job."""

    def __init__(self) -> None:
        self.runner: LocalRunner | None = None
        self.seen: list[tuple[str, str | None, str | None]] = []

    def submit(self, queue_name: str, message: str, job_id: str) -> None:
        assert self.runner is not None
        assert self.runner.journal is not None
        job = self.runner.jobs.get(job_id)
        row = self.runner.journal.get(job_id)
        self.seen.append((job_id, job.status if job else None, row.state if row else None))

    def has_capacity(self, n: int = 1) -> bool:
        return True

    def close(self, timeout: float | None = 30.0) -> bool:
        return True


def test_running_is_journaled_and_the_result_is_recorded_before_the_sender_has_it(tmp_path: Path) -> None:
    sender = _CheckingSender()
    runner = LocalRunner(ToyPipeline, toy_settings(journal_path=str(tmp_path / "jobs.sqlite")), sender=sender)
    sender.runner = runner

    async def scenario() -> tuple[str, str | None]:
        await runner.start()
        assert await runner.wait_ready()
        pipeline = runner.worker("toy").pipeline
        pipeline.gate.clear()  # type: ignore[attr-defined]
        pipeline.started.clear()  # type: ignore[attr-defined]
        request = AsyncInputModel[ToyInput](message=ToyInput(text="block"), success_queue="out")
        job_id = await runner.submit_async("toy", request)
        assert await asyncio.to_thread(pipeline.started.wait, 5)  # type: ignore[attr-defined]
        assert runner.journal is not None
        row = await asyncio.to_thread(runner.journal.get, job_id)
        pipeline.gate.set()  # type: ignore[attr-defined]
        for _ in range(200):
            if sender.seen:
                break
            await asyncio.sleep(0.01)
        await runner.stop()
        return job_id, row.state if row else None

    job_id, state_while_running = asyncio.run(scenario())
    assert state_while_running == "running"
    assert sender.seen == [(job_id, "success", "result_ready")]
