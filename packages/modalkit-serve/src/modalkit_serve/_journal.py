"""The job journal: an SQLite file (WAL mode) that keeps every accepted async job until it is delivered.

One dedicated writer thread owns the connection. Callers queue operations and get a
`concurrent.futures.Future`; the thread takes everything that is waiting, runs it in one transaction and
commits once (group commit), so the requests that arrive together share one fsync and the event loop never
waits on the disk. A job's row goes through ``accepted -> running -> result_ready -> delivered`` (or
``dead_lettered``); each transition is one write, and the result stays in the row until delivery is
acknowledged. ``:memory:`` keeps the same behaviour without a file (for tests, or by choice).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal, NamedTuple

from modalkit_serve.errors import ServeError

__all__ = [
    "JobJournal",
    "JournalCorruptError",
    "JournalError",
    "JournalLockedError",
    "JournalRow",
    "JournalState",
]

JournalState = Literal["accepted", "running", "result_ready", "delivered", "dead_lettered"]
Synchronous = Literal["NORMAL", "FULL"]

_UNFINISHED = ("accepted", "running", "result_ready")
_RANKS: dict[str, int] = {"accepted": 0, "running": 1, "result_ready": 2, "delivered": 3, "dead_lettered": 3}
_MARK = (
    "UPDATE jobs SET state = CASE WHEN {rank} < ? THEN ? ELSE state END, result = COALESCE(?, result), "
    "error = COALESCE(?, error), updated = ? WHERE job_id = ?"
)
_RANK = "CASE state WHEN 'accepted' THEN 0 WHEN 'running' THEN 1 WHEN 'result_ready' THEN 2 ELSE 3 END"
_MARK_SQL = _MARK.format(rank=_RANK)
_COLUMNS = "job_id, model_name, state, request, result, error, owner, created, updated"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    model_name TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT,
    error TEXT,
    owner TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
"""


class JournalError(ServeError):
    """The job journal cannot be used (its message names the file and what to do)."""


class JournalLockedError(JournalError):
    """Another process holds the journal file."""


class JournalCorruptError(JournalError):
    """The journal file is damaged or is not a journal."""


class JournalRow(NamedTuple):
    """One job as the journal has it."""

    job_id: str
    model_name: str
    state: JournalState
    request: str
    result: str | None
    error: str | None
    owner: str | None
    created: float
    updated: float


_Op = Callable[[sqlite3.Connection], Any]


class JobJournal:
    """Accepted async jobs in an SQLite file, written by one thread with group commit.

    Args:
        path: The database file, or ``":memory:"``.
        synchronous: ``NORMAL`` (a commit survives a process crash) or ``FULL`` (it also survives power loss).
        ttl_seconds: How long a delivered job stays readable (`purge_expired`); unfinished and dead-lettered
            jobs are never purged.

    Raises:
        JournalLockedError: another process has the file open as its journal.
        JournalCorruptError: the file is damaged or not an SQLite journal (it is left untouched).
    """

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "NORMAL", ttl_seconds: float = 3600.0) -> None:
        self.path = str(path)
        self.ttl_seconds = ttl_seconds
        self.commits = 0
        self._lock_fd: int | None = None
        if self.path != ":memory:":
            self._lock_fd = _lock(self.path)
        try:
            self._conn = self._open(synchronous)
        except BaseException:
            self._unlock()
            raise
        self._ops: queue.SimpleQueue[tuple[_Op, Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="modalkit-journal", daemon=True)
        self._thread.start()

    def _open(self, synchronous: Synchronous) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"job journal {self.path} cannot be opened: {exc}") from None
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(str(check[0]) if check else "quick_check gave no answer")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalCorruptError(
                f"job journal {self.path} is damaged or not a modalkit journal ({exc}); nothing was changed. "
                f"To start with an empty journal, move it aside (e.g. mv {self.path} {self.path}.bad) and "
                f"restart; the jobs it held can still be read from the moved file with the sqlite3 tool"
            ) from None
        return conn

    # -- writes (one per transition) -------------------------------------------------------------------------

    def accept(self, job_id: str, model_name: str, request: str, owner: str | None = None) -> Future[None]:
        """Record an accepted job; the future resolves once the row is committed."""
        now = time.time()
        return self._submit(
            lambda c: c.execute(
                f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES (?, ?, 'accepted', ?, NULL, NULL, ?, ?, ?)",  # noqa: S608 (constants)
                (job_id, model_name, request, owner, now, now),
            )
        )

    def mark(
        self, job_id: str, state: JournalState, *, result: str | None = None, error: str | None = None
    ) -> Future[None]:
        """Move a job forward to ``state`` (a result or error given is stored; the stored result is kept).

        States only move forward: a ``result_ready`` that arrives after the delivery was acknowledged (the
        sender's thread can be quicker than the event loop) leaves the job ``delivered``.
        """
        now = time.time()
        return self._submit(
            lambda c: c.execute(
                _MARK_SQL,
                (_RANKS[state], state, result, error, now, job_id),
            )
        )

    def redrive(self, job_id: str) -> bool:
        """Send a dead-lettered job again (its result, or the job itself if it has none); False if not dead."""

        def op(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE jobs SET state = CASE WHEN result IS NULL THEN 'accepted' ELSE 'result_ready' END, "
                "error = NULL, updated = ? WHERE job_id = ? AND state = 'dead_lettered'",
                (time.time(), job_id),
            )
            return cur.rowcount > 0

        return bool(self._submit(op).result())

    def purge_expired(self) -> Future[None]:
        """Forget delivered jobs older than ``ttl_seconds``."""
        cutoff = time.time() - self.ttl_seconds
        return self._submit(
            lambda c: c.execute("DELETE FROM jobs WHERE state = 'delivered' AND updated <= ?", (cutoff,))
        )

    # -- reads ------------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> JournalRow | None:
        """One job, or None."""
        rows = self._select("WHERE job_id = ?", (job_id,))
        return rows[0] if rows else None

    def unfinished(self) -> list[JournalRow]:
        """Jobs not yet delivered nor dead-lettered, oldest first (what a restart replays)."""
        return self._select("WHERE state IN (?, ?, ?) ORDER BY created, rowid", _UNFINISHED)

    def dead_letters(self) -> list[JournalRow]:
        """Dead-lettered jobs, oldest first."""
        return self._select("WHERE state = 'dead_lettered' ORDER BY created, rowid", ())

    def pragma(self, name: str) -> Any:
        """A pragma's value (for tests and diagnostics)."""
        return self._submit(lambda c: c.execute(f"PRAGMA {name}").fetchone()[0]).result()

    def _select(self, where: str, params: tuple[Any, ...]) -> list[JournalRow]:
        def op(c: sqlite3.Connection) -> list[JournalRow]:
            return [JournalRow(*row) for row in c.execute(f"SELECT {_COLUMNS} FROM jobs {where}", params)]  # noqa: S608

        rows: list[JournalRow] = self._submit(op).result()
        return rows

    # -- the writer thread -----------------------------------------------------------------------------------

    def _submit(self, op: _Op) -> Future[Any]:
        future: Future[Any] = Future()
        self._ops.put((op, future))
        return future

    def _run(self) -> None:
        conn = self._conn
        while True:
            first = self._ops.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while True:
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(conn, batch)
            if stop:
                break
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[tuple[_Op, Future[Any]]]) -> None:
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, future in batch:
                try:
                    value = op(conn)
                except sqlite3.Error as exc:
                    results.append((future, None, exc))
                else:
                    results.append((future, None if isinstance(value, sqlite3.Cursor) else value, None))
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = JournalError(f"job journal {self.path}: commit failed: {exc}")
            for _, future in batch:
                future.set_exception(error)
            return
        for future, value, failure in results:
            if failure is not None:
                future.set_exception(JournalError(f"job journal {self.path}: {failure}"))
            else:
                future.set_result(value)

    def close(self) -> None:
        """Commit what is queued, stop the writer and release the file."""
        if self._thread.is_alive():
            self._ops.put(None)
            self._thread.join()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _lock(path: str) -> int:
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise JournalError(f"job journal {path}: cannot create its lock file {lock_path}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise JournalLockedError(
            f"job journal {path} is in use by another modalkit server (lock {lock_path} is held); give each "
            "server its own journal path (server_config.journal_path) or stop the other one"
        ) from None
    return fd
