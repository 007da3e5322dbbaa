"""The SQLite job journal: durable across reopen, group commit, one writer, clear errors on bad files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from modalkit_serve._journal import JobJournal, JournalCorruptError, JournalError, JournalLockedError


def test_accepted_jobs_survive_a_reopen_and_replay_lists_the_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    journal = JobJournal(path)
    for i in range(3):
        journal.accept(f"j{i}", "m", f'{{"n":{i}}}').result(5)
    journal.mark("j1", "running")
    journal.mark("j2", "result_ready", result='{"out":2}')
    journal.close()

    reopened = JobJournal(path)
    try:
        unfinished = {row.job_id: row for row in reopened.unfinished()}
        assert set(unfinished) == {"j0", "j1", "j2"}
        assert unfinished["j0"].state == "accepted"
        assert unfinished["j0"].request == '{"n":0}'
        assert unfinished["j2"].result == '{"out":2}'
        reopened.mark("j2", "delivered")
        assert {row.job_id for row in reopened.unfinished()} == {"j0", "j1"}
        row = reopened.get("j2")
        assert row is not None
        assert (row.state, row.result) == ("delivered", '{"out":2}')
    finally:
        reopened.close()


def test_requests_arriving_together_share_one_commit(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "jobs.sqlite")

    async def burst() -> None:
        await asyncio.gather(*(asyncio.wrap_future(journal.accept(f"j{i}", "m", "{}")) for i in range(200)))

    try:
        asyncio.run(burst())
        assert journal.commits < 200 / 4, journal.commits
        assert len(journal.unfinished()) == 200
    finally:
        journal.close()


def test_dead_letters_are_listed_and_redriven(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "jobs.sqlite")
    try:
        journal.accept("j0", "m", "{}").result(5)
        journal.mark("j0", "result_ready", result='{"x":1}')
        journal.mark("j0", "dead_lettered", error="queue down")
        dead = journal.dead_letters()
        assert [(d.job_id, d.error) for d in dead] == [("j0", "queue down")]
        assert journal.unfinished() == []
        assert journal.redrive("j0") is True
        assert journal.dead_letters() == []
        assert [r.state for r in journal.unfinished()] == ["result_ready"]
        assert journal.redrive("nope") is False
    finally:
        journal.close()


def test_two_journals_on_one_file_refuse_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    first = JobJournal(path)
    try:
        with pytest.raises(JournalLockedError, match=str(path)):
            JobJournal(path)
    finally:
        first.close()
    JobJournal(path).close()  # free again once the first closed


def test_a_corrupt_journal_is_an_error_at_open_never_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    journal = JobJournal(path)
    journal.accept("j0", "m", "{}").result(5)
    journal.close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 200 + data[300:])
    with pytest.raises(JournalCorruptError, match=str(path)) as info:
        JobJournal(path)
    assert "move it aside" in str(info.value)
    assert path.read_bytes()[:100] == data[:100]  # the file is left for inspection


def test_a_file_that_is_not_a_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalCorruptError, match=str(path)):
        JobJournal(path)


def test_in_memory_journal_and_synchronous_full(tmp_path: Path) -> None:
    memory = JobJournal(":memory:")
    try:
        memory.accept("j0", "m", "{}").result(5)
        assert [r.job_id for r in memory.unfinished()] == ["j0"]
    finally:
        memory.close()
    full = JobJournal(tmp_path / "full.sqlite", synchronous="FULL")
    try:
        assert full.pragma("synchronous") == 2
        assert full.pragma("journal_mode") == "wal"
    finally:
        full.close()


def test_expired_finished_jobs_are_purged(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "jobs.sqlite", ttl_seconds=0.0)
    try:
        journal.accept("j0", "m", "{}").result(5)
        journal.mark("j0", "delivered")
        journal.accept("j1", "m", "{}").result(5)
        journal.purge_expired().result(5)
        assert journal.get("j0") is None
        assert journal.get("j1") is not None  # unfinished jobs never expire
    finally:
        journal.close()


def test_owner_column_exists_for_job_ownership(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    JobJournal(path).close()
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(jobs)")}
    assert "owner" in columns


@pytest.mark.parametrize("bulk", [True, False], ids=["one-statement", "row-by-row"])
def test_a_group_of_writes_has_the_effect_of_the_writes_in_order(tmp_path: Path, bulk: bool) -> None:
    journal = JobJournal(tmp_path / "jobs.sqlite")
    journal._bulk = bulk and journal._bulk  # row by row is what an SQLite older than 3.33 gets
    gate, held = threading.Event(), threading.Event()
    try:

        def hold(conn: sqlite3.Connection) -> None:
            held.set()
            gate.wait(5)

        journal._submit(hold)  # hold the writer: everything below is one group
        assert held.wait(5)
        accepted = [
            journal.accept(f"j{i}", "m", f'{{"n": {i}, "s": "\\"quoted\\""}}', owner=f"o{i}") for i in range(150)
        ]
        journal.mark("j0", "running")
        journal.mark("j0", "result_ready", result='{"r": 0}')
        journal.mark("j0", "delivered")
        journal.mark("j1", "result_ready", result='{"r": 1}')
        journal.mark("j1", "dead_lettered", error="queue down")
        journal.mark("j2", "delivered")
        journal.mark("j2", "result_ready", result='{"r": 2}')  # late: the state stays delivered, the result is kept
        journal.mark_many([("j3", "running", None, None), ("j4", "dead_lettered", None, "first")])
        journal.mark("j4", "delivered", error="second")  # equal rank: the first state stays, the last error wins
        gate.set()
        for future in accepted:
            future.result(5)
        rows = {r: journal.get(r) for r in ("j0", "j1", "j2", "j3", "j4")}
        assert {r.job_id for r in journal.unfinished()} == {"j3"} | {f"j{i}" for i in range(5, 150)}
    finally:
        gate.set()
        journal.close()
    got = {k: (r.state, r.result, r.error) if r else None for k, r in rows.items()}
    assert got == {
        "j0": ("delivered", '{"r": 0}', None),
        "j1": ("dead_lettered", '{"r": 1}', "queue down"),
        "j2": ("delivered", '{"r": 2}', None),
        "j3": ("running", None, None),
        "j4": ("dead_lettered", None, "second"),
    }
    j1 = rows["j1"]
    assert j1 is not None
    assert (j1.request, j1.owner) == ('{"n": 1, "s": "\\"quoted\\""}', "o1")


def test_a_full_disk_fails_the_accept_naming_the_journal_and_the_journal_recovers(tmp_path: Path) -> None:
    # The disk filling up mid-run: SQLite's page limit stands in for it (same SQLITE_FULL error). The accept
    # must fail, so the caller never gets a 202 for a job that is not on disk, and later writes must work again.
    path = tmp_path / "jobs.sqlite"
    journal = JobJournal(path)
    try:
        journal.accept("before", "m", "{}").result(5)
        pages = journal.pragma("page_count")
        assert journal.pragma(f"max_page_count = {pages}") == pages
        with pytest.raises(JournalError) as caught:
            journal.accept("big", "m", '{"x":"' + "a" * 200_000 + '"}').result(5)
        assert str(path) in str(caught.value)
        assert "full" in str(caught.value)
        assert journal.get("big") is None
        assert journal.pragma(f"max_page_count = {pages + 1000}") >= pages + 1000
        journal.accept("after", "m", "{}").result(5)
        assert {row.job_id for row in journal.unfinished()} == {"before", "after"}
    finally:
        journal.close()
