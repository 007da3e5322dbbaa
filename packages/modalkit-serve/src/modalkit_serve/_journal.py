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
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
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
_MARK_TEMPLATE = (
    "UPDATE jobs SET state = CASE WHEN {rank} < ? THEN ? ELSE state END, result = COALESCE(?, result), "
    "error = COALESCE(?, error), updated = ? WHERE job_id = ?"
)
_RANK = "CASE {col} WHEN 'accepted' THEN 0 WHEN 'running' THEN 1 WHEN 'result_ready' THEN 2 ELSE 3 END"
_MARK_SQL = _MARK_TEMPLATE.format(rank=_RANK.format(col="state"))
_COLUMNS = "job_id, model_name, state, request, result, error, owner, created, updated"
_ACCEPT_SQL = f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES (?, ?, 'accepted', ?, NULL, NULL, ?, ?, ?)"  # noqa: S608


# A group's rows go in as one statement with many rows of parameters. Each statement the sqlite3 module runs
# lets go of the GIL and must win it back from the busy event loop; per row, that hand-off cost more than SQLite.
# Groups are cut into chunks of a power of two rows (the last row repeated to fill one: writing a row twice is
# harmless), so a few statements, prepared once and cached, serve every group size.
_CHUNKS = (128, 64, 32, 16, 8, 4, 2)


def _accept_rows_sql(n: int) -> str:
    return f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES " + ", ".join(  # noqa: S608 (constants)
        ["(?, ?, 'accepted', ?, NULL, NULL, ?, ?, ?)"] * n
    )


def _mark_rows_sql(n: int) -> str:
    rows = ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)
    return (
        f"UPDATE jobs SET state = CASE WHEN {_RANK.format(col='jobs.state')} < m.rank THEN m.state "  # noqa: S608
        "ELSE jobs.state END, result = COALESCE(m.result, jobs.result), error = COALESCE(m.error, jobs.error), "
        "updated = m.updated FROM (SELECT column1 AS rank, column2 AS state, column3 AS result, column4 AS error, "
        f"column5 AS updated, column6 AS job_id FROM (VALUES {rows})) AS m WHERE jobs.job_id = m.job_id"
    )


_ACCEPT_ROWS_SQL = {n: _accept_rows_sql(n) for n in _CHUNKS}
_MARK_ROWS_SQL = {n: _mark_rows_sql(n) for n in _CHUNKS}


def _write_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], one: str, many: dict[int, str]) -> None:
    """Write ``rows`` with as few statements as the chunk sizes allow."""
    start = 0
    while start < len(rows):
        left = len(rows) - start
        if left == 1:
            conn.execute(one, rows[start])
            return
        size = min((n for n in _CHUNKS if n >= left), default=_CHUNKS[0])
        chunk = rows[start : start + size]
        chunk += [chunk[-1]] * (size - len(chunk))
        conn.execute(many[size], [value for row in chunk for value in row])
        start += size


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
-- By state, then last change: what replay and the dead-letter list read, and what the TTL purge deletes.
DROP INDEX IF EXISTS jobs_state;
CREATE INDEX IF NOT EXISTS jobs_state_updated ON jobs (state, updated);
"""


logger = logging.getLogger("modalkit.journal")


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
# One hand-over to the writer thread: (kind, payload, extra). Accepts carry rows and the callback to run once
# they are committed; marks carry UPDATE parameters; calls carry a function of the connection and its future.
_Entry = tuple[int, Any, Any]
_ACCEPT, _MARK, _CALL = 0, 1, 2
_PURGE_EVERY_SECONDS = 60.0


def _settle(future: Future[None], exc: BaseException | None) -> None:
    if not future.set_running_or_notify_cancel():
        return  # the waiter gave up (a cancelled asyncio.wrap_future); the row is committed all the same
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def _merge_marks(marks: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One mark per job, with the effect the marks would have one after another (an UPDATE ... FROM applies one).

    The state is the first of the highest rank (a later equal rank does not replace it), the result and the
    error the last ones given.
    """
    merged: dict[str, list[Any]] = {}
    for rank, state, result, error, updated, job_id in marks:
        seen = merged.get(job_id)
        if seen is None:
            merged[job_id] = [rank, state, result, error, updated, job_id]
            continue
        if rank > seen[0]:
            seen[0], seen[1] = rank, state
        if result is not None:
            seen[2] = result
        if error is not None:
            seen[3] = error
        seen[4] = updated
    return [tuple(m) for m in merged.values()]


def _call(then: Callable[[JournalError | None], object], error: JournalError | None) -> None:
    try:
        then(error)
    except Exception:
        logger.exception("job journal: a commit callback failed")


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
        # UPDATE ... FROM (SQLite 3.33+) writes a group's state changes in one statement; older: row by row.
        self._bulk = sqlite3.sqlite_version_info >= (3, 33, 0)
        self._lock_fd: int | None = None
        if self.path != ":memory:":
            self._lock_fd = _lock(self.path)
        try:
            self._conn = self._open(synchronous)
        except BaseException:
            self._unlock()
            raise
        self._ops: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
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
        future: Future[None] = Future()
        self.accept_many([(job_id, model_name, request, owner)], lambda exc: _settle(future, exc))
        return future

    def accept_many(
        self, jobs: Sequence[tuple[str, str, str, str | None]], then: Callable[[JournalError | None], object]
    ) -> None:
        """Record accepted jobs (``(job_id, model_name, request, owner)`` each) and call ``then`` once committed.

        ``then`` runs on the journal's thread with None, or with the error when the commit failed; it must be
        quick (hand the news to the event loop). One call per group: the event loop hands over every job accepted
        in one turn at once, and wakes once when they are durable.
        """
        now = time.time()
        rows = [(job_id, model_name, request, owner, now, now) for job_id, model_name, request, owner in jobs]
        self._ops.put((_ACCEPT, rows, then))

    def mark(self, job_id: str, state: JournalState, *, result: str | None = None, error: str | None = None) -> None:
        """Move a job forward to ``state`` (a result or error given is stored; the stored result is kept).

        Returns at once; the write joins the next group commit (`flush` waits for it). States only move forward:
        a ``result_ready`` that arrives after the delivery was acknowledged leaves the job ``delivered``.
        """
        self._ops.put((_MARK, [(_RANKS[state], state, result, error, time.time(), job_id)], None))

    def mark_many(self, marks: Sequence[tuple[str, JournalState, str | None, str | None]]) -> None:
        """`mark` for several jobs at once (``(job_id, state, result, error)`` each): one hand-over."""
        now = time.time()
        self._ops.put((_MARK, [(_RANKS[st], st, res, err, now, job_id) for job_id, st, res, err in marks], None))

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every write queued so far is committed.

        Raises:
            JournalError: the commit failed.
        """
        self._submit(lambda c: None).result(timeout)

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

    def purge_expired(self) -> Future[int]:
        """Forget delivered jobs older than ``ttl_seconds``; the future gives how many went."""
        return self._submit(self._purge)

    def _purge(self, conn: sqlite3.Connection) -> int:
        cutoff = time.time() - self.ttl_seconds
        return conn.execute("DELETE FROM jobs WHERE state = 'delivered' AND updated <= ?", (cutoff,)).rowcount

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
        self._ops.put((_CALL, op, future))
        return future

    def _run(self) -> None:
        conn = self._conn
        ops = self._ops
        next_purge = time.monotonic() + _PURGE_EVERY_SECONDS
        while True:
            first = ops.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while True:
                try:
                    nxt = ops.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + _PURGE_EVERY_SECONDS
                batch.append((_CALL, self._purge, None))
            self._commit(conn, batch)
            if stop:
                break
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Entry]) -> None:
        """Run a group of writes in one transaction, in the order they came (calls are barriers)."""
        if self._bulk and all(kind != _CALL for kind, _, _ in batch):
            self._write_group(conn, batch)
            return
        accepts: list[tuple[Any, ...]] = []
        marks: list[tuple[Any, ...]] = []
        done: list[Callable[[JournalError | None], object]] = []
        calls: list[tuple[Future[Any] | None, Any, BaseException | None]] = []

        def write_pending() -> None:
            # Accepts first: a job's marks always come after its accept, which is in this group or an earlier one.
            if accepts:
                _write_rows(conn, accepts, _ACCEPT_SQL, _ACCEPT_ROWS_SQL)
                accepts.clear()
            if marks:
                if self._bulk:
                    _write_rows(conn, _merge_marks(marks), _MARK_SQL, _MARK_ROWS_SQL)
                else:
                    conn.executemany(_MARK_SQL, marks)
                marks.clear()

        try:
            conn.execute("BEGIN IMMEDIATE")
            for kind, payload, extra in batch:
                if kind == _ACCEPT:
                    accepts.extend(payload)
                    done.append(extra)
                elif kind == _MARK:
                    marks.extend(payload)
                else:
                    write_pending()
                    try:
                        value = payload(conn)
                    except sqlite3.Error as exc:
                        calls.append((extra, None, exc))
                    else:
                        calls.append((extra, None if isinstance(value, sqlite3.Cursor) else value, None))
            write_pending()
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = JournalError(f"job journal {self.path}: commit failed: {exc}")
            logger.error("%s; %d writes of this group are not in the journal", error, len(batch))
            for then in done:
                _call(then, error)
            for kind, _, extra in batch:
                if kind == _CALL and extra is not None:
                    extra.set_exception(error)
            return
        for then in done:
            _call(then, None)
        for future, value, failure in calls:
            if future is None:
                continue
            if failure is not None:
                future.set_exception(JournalError(f"job journal {self.path}: {failure}"))
            else:
                future.set_result(value)

    def _write_group(self, conn: sqlite3.Connection, batch: list[_Entry]) -> None:
        """The common group, accepts and marks only: one statement each, each its own (atomic) transaction.

        The accepts commit first and their callers hear of it at once; the marks follow (a crash between the two
        only means a job is sent again after the restart, which at-least-once allows).
        """
        accepts = [row for kind, rows, _ in batch if kind == _ACCEPT for row in rows]
        marks = [row for kind, rows, _ in batch if kind == _MARK for row in rows]
        if accepts:
            error: JournalError | None = None
            try:
                _write_rows(conn, accepts, _ACCEPT_SQL, _ACCEPT_ROWS_SQL)
                self.commits += 1
            except sqlite3.Error as exc:
                error = JournalError(f"job journal {self.path}: commit failed: {exc}")
                logger.error("%s; %d accepted jobs are not in the journal", error, len(accepts))
            for kind, _, then in batch:
                if kind == _ACCEPT:
                    _call(then, error)
        if marks:
            try:
                _write_rows(conn, _merge_marks(marks), _MARK_SQL, _MARK_ROWS_SQL)
                self.commits += 1
            except sqlite3.Error as exc:
                logger.error(
                    "job journal %s: commit failed: %s; %d state changes are not in the journal",
                    self.path,
                    exc,
                    len(marks),
                )

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
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # e.g. .modalkit/ beside the app, on first start
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
