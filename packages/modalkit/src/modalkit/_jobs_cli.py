"""``modalkit jobs``: the dead letters of the async job journal, and sending them again."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
from pathlib import Path

from modalkit.errors import ModalkitError
from modalkit_config import load_settings
from modalkit_serve._journal import JobJournal, JournalCorruptError

__all__ = ["jobs_command"]


def jobs_command(args: argparse.Namespace) -> int:
    """Run ``modalkit jobs ACTION``; returns the exit status."""
    path = _journal_path(args.journal, args.config)
    if args.action == "dead-letters":
        return _dead_letters(path, as_json=args.json)
    return _redrive(path, args.job_ids)


def _journal_path(journal: str | None, config: str | None) -> Path:
    if journal:
        return Path(journal)
    files = config or os.environ.get("MODALKIT_CONFIG") or "modalkit.yaml"
    settings = load_settings([f.strip() for f in files.split(",") if f.strip()])
    configured = settings.app_settings.server_config.journal_path
    if configured is None or configured == ":memory:":
        raise ModalkitError(
            f"{files} keeps async jobs in memory (server_config.journal_path is {configured or 'null'}); "
            "set server_config.journal_path to a file, or pass --journal FILE"
        )
    return Path(configured)


def _dead_letters(path: Path, *, as_json: bool) -> int:
    # Read-only and without the journal's lock, so it works beside a running server (SQLite's WAL allows it).
    if not path.exists():
        raise ModalkitError(f"job journal {path} does not exist")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            rows = conn.execute(
                "SELECT job_id, model_name, updated, result IS NOT NULL, error FROM jobs "
                "WHERE state = 'dead_lettered' ORDER BY created, rowid"
            ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise JournalCorruptError(f"job journal {path} cannot be read ({exc}); is it a modalkit journal?") from None
    if as_json:
        for job_id, model, updated, has_result, error in rows:
            record = {"job_id": job_id, "model": model, "since": updated, "has_result": bool(has_result)}
            print(json.dumps({**record, "error": error}))
        return 0
    print(f"{'JOB_ID':<34} {'MODEL':<20} {'SINCE (UTC)':<19} {'RESULT':<6} ERROR")
    for job_id, model, updated, has_result, error in rows:
        since = dt.datetime.fromtimestamp(updated, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{job_id:<34} {model:<20} {since:<19} {'yes' if has_result else 'no':<6} {error or ''}")
    print(f"{len(rows)} dead-lettered job(s) in {path}", file=sys.stderr)
    return 0


def _redrive(path: Path, job_ids: list[str]) -> int:
    if not path.exists():
        raise ModalkitError(f"job journal {path} does not exist")
    journal = JobJournal(path)  # takes the lock: a running server must be stopped first (the error says so)
    try:
        missed = [job_id for job_id in job_ids if not journal.redrive(job_id)]
    finally:
        journal.close()
    done = len(job_ids) - len(missed)
    print(f"{done} jobs put back in {path}: the server sends them again when it next starts")
    for job_id in missed:
        print(f"modalkit: error: job {job_id} is not dead-lettered in {path} (unknown, or not failed)", file=sys.stderr)
    return 1 if missed else 0
