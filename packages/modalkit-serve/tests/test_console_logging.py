"""Readable console logs on a terminal (or --log-format console), JSON otherwise; probe requests below INFO;
the start-up banner (issue 23 item 4)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from modalkit_serve import configure_logging
from modalkit_serve._logging import AccessLog, shutdown_logging
from modalkit_serve.testing import ServedProcess
from test_service import write_app

_CONSOLE = re.compile(r"^\d\d:\d\d:\d\d\.\d\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+ +.+$")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_root_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    shutdown_logging()
    root.setLevel(level)


def written(stream: io.StringIO) -> list[str]:
    shutdown_logging()
    return stream.getvalue().splitlines()


def test_console_format_is_one_readable_line_per_record_with_its_fields() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream, log_format="console")
    logging.getLogger("modalkit.test").warning("hello %s", "there", extra={"model": "m1"})
    AccessLog().log(("rid-1", "POST", "/predict_sync", "/predict_sync", "m1", 200, 1.23456, 3, 0.5))

    first, second = written(stream)
    assert _CONSOLE.match(first), first
    assert " WARNING " in first
    assert "modalkit.test" in first
    assert first.endswith("hello there  model=m1")
    assert _CONSOLE.match(second), second
    assert "POST /predict_sync 200 1.2ms" in second
    assert "model=m1" in second
    assert "batch_size=3" in second
    assert "request_id=rid-1" in second


def test_console_format_keeps_the_traceback() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream, log_format="console")
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("modalkit.test").exception("failed")
    text = "\n".join(written(stream))
    assert "failed" in text
    assert "ValueError: bad" in text


@pytest.mark.parametrize(("stream", "is_json"), [(Terminal(), False), (io.StringIO(), True)])
def test_auto_picks_console_on_a_terminal_and_json_elsewhere(stream: io.StringIO, is_json: bool) -> None:
    configure_logging("INFO", stream=stream)
    logging.getLogger("modalkit.test").info("hi")
    [line] = written(stream)
    assert line.startswith("{") is is_json
    assert bool(_CONSOLE.match(line)) is not is_json


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="console"):
        configure_logging("INFO", stream=io.StringIO(), log_format="fancy")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_probe_requests_are_logged_at_debug_not_info(log_format: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream, log_format=log_format)
    for path in ("/ready", "/health"):
        AccessLog().log(("rid", "GET", path, path, None, 200, 0.1, None, None))
    AccessLog().log(("rid", "GET", "/jobs/x", "/jobs/{job_id}", None, 404, 0.1, None, None))
    [line] = written(stream)
    assert "/jobs/x" in line

    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream, log_format=log_format)
    AccessLog().log(("rid", "GET", "/ready", "/ready", None, 200, 0.1, None, None))
    [line] = written(stream)
    assert "DEBUG" in line
    assert "/ready" in line


CONFIG = """
app_settings:
  app_prefix: upper
model_settings:
  model_entries:
    upper: {}
    shout: {}
"""


def _app(folder: Path) -> Path:
    app = write_app(folder)  # test_service's app file, here with two model entries
    (folder / "modalkit.yaml").write_text(CONFIG)
    return app


def test_the_banner_names_models_urls_and_config_files(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with ServedProcess(app, log_dir=tmp_path, ready_path="/ready") as server:
        base = server.url
    records = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    [banner] = [r for r in records if "docs_url" in r]
    assert banner["models"] == ["upper", "shout"]
    assert banner["docs_url"] == f"{base}/docs"
    assert banner["metrics_url"] == f"{base}/metrics"
    assert banner["config_files"] == [str((tmp_path / "modalkit.yaml").resolve())]
    for text in ("upper", "shout", f"{base}/docs", f"{base}/metrics", "modalkit.yaml"):
        assert text in banner["message"], text
    # The ready polls of ServedProcess are not in the INFO log.
    assert not [r for r in records if r.get("logger") == "modalkit.access" and r.get("route") == "/ready"]


def test_log_format_console_from_the_command_line(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with ServedProcess(app, ["--log-format", "console"], log_dir=tmp_path, ready_path="/ready") as server:
        base = server.url
    lines = [line for line in server.stderr().splitlines() if line.strip()]
    assert lines
    assert not [line for line in lines if line.startswith("{")], lines
    assert any(f"{base}/docs" in line for line in lines), lines


def test_modalkit_serve_accepts_log_format(tmp_path: Path) -> None:
    pytest.importorskip("modalkit")
    from modalkit.testing import ModalkitServer

    app = _app(tmp_path)
    with ModalkitServer(app, ["--log-format", "console"], log_dir=tmp_path) as server:
        base = server.url
    lines = [line for line in server.stderr().splitlines() if line.strip()]
    assert not [line for line in lines if line.startswith("{")], lines
    assert any(f"{base}/docs" in line for line in lines), lines


@pytest.mark.parametrize("visible", [None, "1"])
def test_a_gpu_in_the_config_is_named_at_start_with_the_devices_a_local_run_sees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, visible: str | None
) -> None:
    # deployment_config.gpu asks Modal for a GPU; a local run cannot honour it, so it says what the model gets.
    app = _app(tmp_path)
    with_gpu = CONFIG.replace("app_prefix: upper", "app_prefix: upper\n  deployment_config: {gpu: T4}")
    (tmp_path / "modalkit.yaml").write_text(with_gpu)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with ServedProcess(app, log_dir=tmp_path, ready_path="/ready") as server:
        pass
    records = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    [note] = [r for r in records if "gpu" in r]
    assert note["level"] == "WARNING"
    assert note["gpu"] == "T4"
    assert note["cuda_visible_devices"] == visible
    assert "Modal only" in note["message"]
    assert ("CUDA_VISIBLE_DEVICES=1" if visible else "CUDA_VISIBLE_DEVICES is not set") in note["message"]


def test_no_gpu_note_without_a_gpu(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with ServedProcess(app, log_dir=tmp_path, ready_path="/ready") as server:
        pass
    records = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    assert [r for r in records if "docs_url" in r]  # the banner was logged, and no GPU note beside it
    assert not [r for r in records if "gpu" in r]
