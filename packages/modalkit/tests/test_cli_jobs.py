"""``modalkit jobs`` over the job journal, and ``modalkit serve`` refusing a journal it cannot use, in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modalkit_serve._journal import JobJournal

from .cli_support import modalkit
from .conftest import APPS


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The translation app, its modalkit.yaml naming a journal beside it."""
    folder = tmp_path / "project"
    shutil.copytree(APPS, folder)
    (folder / "modalkit.yaml").write_text(
        "app_settings:\n  app_prefix: x\n  server_config:\n    journal_path: jobs.sqlite\n"
        "model_settings:\n  model_entries: {translation_model: {}}\n"
    )
    return folder


def journal_with_dead_letters(path: Path) -> None:
    journal = JobJournal(path)
    try:
        journal.accept("job-ran", "translation_model", '{"message": {"text": "a"}}').result(5)
        journal.mark("job-ran", "result_ready", result='{"status": "success"}')
        journal.mark("job-ran", "dead_lettered", error="ConnectionError: queue down")
        journal.accept("job-never-ran", "translation_model", '{"message": {"text": "b"}}').result(5)
        journal.mark("job-never-ran", "dead_lettered", error="shutdown: not delivered")
        journal.accept("job-fine", "translation_model", "{}").result(5)
        journal.mark("job-fine", "delivered")
    finally:
        journal.close()


def test_dead_letters_lists_the_journal_rows(project: Path) -> None:
    journal_with_dead_letters(project / "jobs.sqlite")
    result = modalkit("jobs", "dead-letters", cwd=project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["job-ran", "job-never-ran"]
    assert "ConnectionError: queue down" in lines[1]
    as_json = modalkit("jobs", "dead-letters", "--json", "--journal", str(project / "jobs.sqlite"))
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(r["job_id"], r["has_result"]) for r in records] == [("job-ran", True), ("job-never-ran", False)]


def test_redrive_puts_dead_letters_back_for_the_next_start(project: Path) -> None:
    path = project / "jobs.sqlite"
    journal_with_dead_letters(path)
    result = modalkit("jobs", "redrive", "job-ran", "job-never-ran", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "2 jobs" in result.stdout
    journal = JobJournal(path)
    try:
        assert {r.job_id: r.state for r in journal.unfinished()} == {
            "job-ran": "result_ready",  # its result is sent again
            "job-never-ran": "accepted",  # it runs again
        }
    finally:
        journal.close()
    again = modalkit("jobs", "redrive", "job-fine", cwd=project)
    assert again.returncode == 1
    assert "job-fine" in again.stderr
    assert "not dead-lettered" in again.stderr


def test_jobs_without_a_journal_says_which_key_to_set(tmp_path: Path) -> None:
    (tmp_path / "modalkit.yaml").write_text(
        "app_settings:\n  app_prefix: x\nmodel_settings:\n  model_entries: {m: {}}\n"
    )
    result = modalkit("jobs", "dead-letters", cwd=tmp_path)
    assert result.returncode == 2
    assert "server_config.journal_path" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_journal_in_use_in_one_line(project: Path) -> None:
    held = JobJournal(project / "jobs.sqlite")  # another server has it
    try:
        result = modalkit("serve", str(project / "modal_translation_app.py"), "--port", "0", cwd=project, timeout=60)
    finally:
        held.close()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "jobs.sqlite" in line]
    assert len(errors) == 1, result.stderr
    assert "in use by another modalkit server" in errors[0]


def test_serve_refuses_a_damaged_journal_in_one_line_and_leaves_it(project: Path) -> None:
    path = project / "jobs.sqlite"
    path.write_bytes(b"not a database at all " * 200)
    result = modalkit("serve", str(project / "modal_translation_app.py"), "--port", "0", cwd=project, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "jobs.sqlite" in line]
    assert len(errors) == 1, result.stderr
    assert "move it aside" in errors[0]
    assert path.read_bytes() == b"not a database at all " * 200
