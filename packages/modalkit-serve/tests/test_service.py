"""ServiceSpec, load_service, the CLI, and the real server process (port 0, announce line, SIGTERM drain)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from modalkit_serve import ServiceSpec, load_service, use_config_beside
from modalkit_serve.cli import main
from modalkit_serve.errors import ServiceSpecError
from modalkit_serve.testing import ServedProcess
from serve_support import ToyInput, ToyOutput, ToyPipeline, toy_settings

# A self-contained app: a slow pipeline (so async jobs are still queued when SIGTERM arrives) and a queue
# backend that appends each delivered message to a JSON-lines file, so delivery is visible from outside.
APP = """
from __future__ import annotations

import json
import threading
import time
from typing import Any

from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_queue import register_backend
from modalkit_serve import ServiceSpec


class FileBackend:
    def __init__(self, config: Any) -> None:
        self.path = config.broker_url
        self.lock = threading.Lock()

    async def send(self, queue_name: str, message: str) -> None:
        with self.lock, open(self.path, "a") as f:
            f.write(json.dumps({"queue": queue_name, "message": json.loads(message)}) + "\\n")

    async def close(self) -> None:
        return None


register_backend("jsonl", FileBackend, replace=True)


class In(BaseModel):
    text: str


class Out(InferenceOutputModel):
    upper: str


class SlowUpper(InferencePipeline[In, Out]):
    def preprocess(self, input_list: list[In]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[In], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.model_kwargs.get("seconds_per_batch", 0.0))
        return {}

    def postprocess(self, input_list: list[In], raw_output: dict[str, Any]) -> list[Out | ItemError]:
        return [Out(upper=i.text.upper()) for i in input_list]


service = ServiceSpec(SlowUpper)
"""

CONFIG = """
app_settings:
  app_prefix: slow
  batch_config: {{max_batch_size: 4, wait_ms: 10}}
  server_config: {{drain_timeout_seconds: 60}}
  queue_config: {{backend: jsonl, broker_url: "{sink}"}}
model_settings:
  model_entries:
    slow: {{seconds_per_batch: {seconds}}}
"""


def write_app(folder: Path, seconds: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(APP)
    (folder / "modalkit.yaml").write_text(CONFIG.format(sink=folder / "delivered.jsonl", seconds=seconds))
    return folder / "app.py"


# -- ServiceSpec and load_service ------------------------------------------------------------------------------


def test_a_spec_takes_the_models_the_pipeline_declares() -> None:
    spec = ServiceSpec(ToyPipeline)
    assert (spec.input_model, spec.output_model) == (ToyInput, ToyOutput)


def test_a_spec_needs_a_pipeline_class() -> None:
    with pytest.raises(ServiceSpecError, match="InferencePipeline subclass"):
        ServiceSpec(dict)  # type: ignore[arg-type]


def test_load_service_imports_the_file_and_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "neighbour_model.py").write_text("from serve_support import ToyPipeline as Pipeline\n")
    app = tmp_path / "svc_app.py"
    app.write_text(
        "from neighbour_model import Pipeline\nfrom modalkit_serve import ServiceSpec\nmine = ServiceSpec(Pipeline)\n"
    )

    spec = load_service(app)

    assert spec.pipeline_cls is ToyPipeline
    assert spec.source == app.resolve()


def test_load_service_accepts_a_factory(tmp_path: Path) -> None:
    app = tmp_path / "factory_app.py"
    app.write_text(
        "from serve_support import ToyPipeline\nfrom modalkit_serve import ServiceSpec\n"
        "def modalkit_service():\n    return ServiceSpec(ToyPipeline)\n"
    )
    assert load_service(app).pipeline_cls is ToyPipeline


def test_service_wins_among_several_specs(tmp_path: Path) -> None:
    app = tmp_path / "several_app.py"
    app.write_text(
        "from serve_support import ToyPipeline\nfrom modalkit_serve import ServiceSpec\n"
        "other = ServiceSpec(ToyPipeline)\nservice = ServiceSpec(ToyPipeline)\n"
    )
    module_spec = load_service(app)
    import several_app  # type: ignore[import-not-found]

    assert module_spec is several_app.service


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "defines no service. Add `service = ServiceSpec(YourPipeline)`"),
        ("raise RuntimeError('broken import')\n", "importing it failed: RuntimeError: broken import"),
        (
            "from serve_support import ToyPipeline\nfrom modalkit_serve import ServiceSpec\n"
            "a = ServiceSpec(ToyPipeline)\nb = ServiceSpec(ToyPipeline)\n",
            "several ServiceSpec objects (a, b)",
        ),
        ("def modalkit_service():\n    return 42\n", "returned int, not a ServiceSpec"),
    ],
)
def test_load_service_says_what_is_wrong(tmp_path: Path, source: str, message: str) -> None:
    app = tmp_path / f"bad_app_{abs(hash(source))}.py"
    app.write_text(source)
    with pytest.raises(ServiceSpecError) as info:
        load_service(app)
    assert message in str(info.value)
    assert str(app.resolve()) in str(info.value)


def test_load_service_of_a_missing_file() -> None:
    with pytest.raises(ServiceSpecError, match="no such file"):
        load_service("does/not/exist.py")


# -- the CLI ---------------------------------------------------------------------------------------------------


def test_config_beside_the_app_is_used_unless_one_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = write_app(tmp_path / "svc")
    monkeypatch.setenv("MODALKIT_CONFIG", "")  # recorded, so whatever use_config_beside sets is undone after the test
    monkeypatch.delenv("MODALKIT_CONFIG")

    monkeypatch.chdir(tmp_path)
    use_config_beside(app, None)
    assert os.environ["MODALKIT_CONFIG"] == str(tmp_path / "svc" / "modalkit.yaml")
    use_config_beside(app, "other.yaml,overlay.yaml")
    assert os.environ["MODALKIT_CONFIG"] == f"{tmp_path / 'other.yaml'},{tmp_path / 'overlay.yaml'}"
    use_config_beside(app, None)  # an explicit choice in the environment is kept
    assert os.environ["MODALKIT_CONFIG"] == f"{tmp_path / 'other.yaml'},{tmp_path / 'overlay.yaml'}"


def test_cli_errors_are_one_readable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODALKIT_CONFIG", "")  # recorded, so whatever use_config_beside sets is undone after the test
    monkeypatch.delenv("MODALKIT_CONFIG")
    assert main([str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err

    app = write_app(tmp_path / "svc")
    (tmp_path / "svc" / "modalkit.yaml").write_text(
        "app_settings: {app_prefix: x, batch_config: {max_batch_size: 0}}\n"
    )
    assert main([str(app)]) == 2
    err = capsys.readouterr().err
    assert "max_batch_size" in err
    assert "Traceback" not in err

    assert main([str(app), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


# -- the real process ------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_the_server_announces_its_port_and_serves(tmp_path: Path) -> None:
    app = write_app(tmp_path / "svc")
    with ServedProcess(app, log_dir=tmp_path) as server:
        response = httpx.post(f"{server.url}/predict_sync", json={"text": "hi"}, timeout=10)
        assert response.status_code == 200
        assert response.json()["upper"] == "HI"
        assert f"modalkit serving on http://127.0.0.1:{server.port}" in server.stderr()
        code = server.stop()

    # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly, so the exit status says "terminated".
    assert code in (0, -signal.SIGTERM)
    records = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    assert "Application shutdown complete." in [r["message"] for r in records]
    access = [r for r in records if r["logger"] == "modalkit.access"]
    assert [(r["route"], r["status"], r["model"]) for r in access] == [("/predict_sync", 200, "slow")]


@pytest.mark.e2e
def test_sigterm_delivers_every_accepted_async_job(tmp_path: Path) -> None:
    app = write_app(tmp_path / "svc", seconds=0.1)  # 4 items per 100 ms batch: the queue is long at SIGTERM
    sink = tmp_path / "svc" / "delivered.jsonl"
    with ServedProcess(app, log_dir=tmp_path) as server:
        accepted: list[str] = []
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for i in range(60):
                response = client.post("/predict_async", json={"message": {"text": f"t{i}"}, "success_queue": "done"})
                assert response.status_code == 202
                accepted.append(response.json()["job_id"])
        delivered_before = len(sink.read_text().splitlines()) if sink.exists() else 0
        server.signal(signal.SIGTERM)
        code = server.wait(120)

    assert delivered_before < len(accepted), "the test needs jobs still queued at SIGTERM"
    delivered = [json.loads(line) for line in sink.read_text().splitlines()]
    assert sorted(d["message"]["job_id"] for d in delivered) == sorted(accepted)
    assert {d["queue"] for d in delivered} == {"done"}
    assert code in (0, -signal.SIGTERM)
    assert "draining" in server.stderr()
    assert "Application shutdown complete." in server.stderr()


@pytest.mark.e2e
def test_a_server_that_cannot_load_its_config_exits_with_a_message(tmp_path: Path) -> None:
    app = write_app(tmp_path / "svc")
    (tmp_path / "svc" / "modalkit.yaml").write_text("app_settings: [not, a, mapping]\n")
    server = ServedProcess(app, log_dir=tmp_path, startup_timeout=30)
    with pytest.raises(RuntimeError, match="exited with 2"):
        server.start()
    assert "app_settings" in server.stderr()


@pytest.mark.e2e
def test_concurrent_callers_over_real_sockets_share_batches(tmp_path: Path) -> None:
    # Concurrent callers through real sockets share batches: the batch-size histogram shows sizes above 1.
    app = write_app(tmp_path / "svc", seconds=0.05)
    with ServedProcess(app, log_dir=tmp_path) as server:
        barrier = threading.Barrier(12)
        codes: list[int] = []

        def call(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                barrier.wait()
                codes.append(client.post("/predict_sync", json={"text": f"c{i}"}).status_code)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text

    assert codes == [200] * 12
    sizes = {
        line.split("} ")[0]: float(line.split("} ")[1])
        for line in metrics.splitlines()
        if line.startswith("modalkit_batch_size_")
    }
    assert sizes['modalkit_batch_size_bucket{le="1.0",model="slow"'] < sizes['modalkit_batch_size_count{model="slow"']


def test_reload_needs_the_app_file() -> None:
    from modalkit_serve import run

    spec = ServiceSpec(ToyPipeline, settings=toy_settings())
    with pytest.raises(ServiceSpecError, match="reload needs the app file"):
        run(spec, port=0, reload=True)


def test_the_reload_factory_builds_the_app_named_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modalkit_serve._appfile import APP_ENV, reload_factory
    from modalkit_serve._logging import shutdown_logging

    app_file = write_app(tmp_path / "svc")
    monkeypatch.setenv("MODALKIT_CONFIG", str(app_file.parent / "modalkit.yaml"))
    monkeypatch.setenv(APP_ENV, str(app_file))
    try:
        app = reload_factory()
    finally:
        shutdown_logging()
    assert "/predict_sync" in {getattr(r, "path", None) for r in app.routes}


# -- a model entry checked against the pipeline's declared arguments --------------------------------------------

DECLARED_APP = """
from typing import Any

from modalkit_serve import ServiceSpec
from serve_support import ToyPipeline


class Weighted(ToyPipeline):
    def __init__(self, model_name: str, folder: str, common: dict[str, Any], *, weights: str = "default.bin") -> None:
        super().__init__(model_name, folder, common, weights=weights)


service = ServiceSpec(Weighted)
"""


def test_a_typo_in_a_model_entry_is_a_config_error_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODALKIT_CONFIG", "")  # recorded, so whatever use_config_beside sets is undone after the test
    monkeypatch.delenv("MODALKIT_CONFIG")
    (tmp_path / "declared_app.py").write_text(DECLARED_APP)
    config = tmp_path / "modalkit.yaml"
    config.write_text("app_settings: {app_prefix: x}\nmodel_settings:\n  model_entries:\n    m:\n      wieghts: a\n")

    assert main([str(tmp_path / "declared_app.py"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "wieghts" in line]
    assert f"{config}:5: model_settings.model_entries.m.wieghts: unknown argument of Weighted.__init__" in line
    assert "did you mean 'weights'?" in line

    # The same check guards every way in: the app a test builds refuses the entry before any model loads.
    from modalkit_config import ConfigValidationError, load_settings
    from modalkit_serve import build_app

    spec = load_service(tmp_path / "declared_app.py")
    spec.settings = load_settings(config, env={}, env_file=None)
    with pytest.raises(ConfigValidationError, match="did you mean 'weights'"):
        build_app(spec)
    config.write_text(config.read_text().replace("wieghts", "weights"))
    spec.settings = load_settings(config, env={}, env_file=None)
    assert build_app(spec) is not None


# -- one way in: the app file, the config beside it, the reload worker (issue 18 item 1) -------------------------


def test_config_files_named_on_the_command_line_are_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modalkit_serve import use_config_beside

    app = write_app(tmp_path / "svc")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODALKIT_CONFIG", "")
    use_config_beside(app, "other.yaml, sub/overlay.yaml")
    assert os.environ["MODALKIT_CONFIG"] == f"{tmp_path / 'other.yaml'},{tmp_path / 'sub' / 'overlay.yaml'}"


def test_port_file_with_reload_is_refused_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modalkit_serve import run

    app = write_app(tmp_path / "svc")
    monkeypatch.setenv("MODALKIT_CONFIG", str(app.parent / "modalkit.yaml"))
    with pytest.raises(ServiceSpecError, match="--port-file does not work with --reload"):
        run(load_service(app), port=0, reload=True, port_file=tmp_path / "port")
    assert main([str(app), "--reload", "--port-file", str(tmp_path / "port")]) == 2
    assert "--port-file does not work with --reload" in capsys.readouterr().err
    assert not (tmp_path / "port").exists()


@pytest.mark.parametrize("name", ["MODALKIT_APP_FILE", "MODALKIT_SERVE_APP"])
def test_the_reload_worker_reads_the_app_file_under_either_name_and_freezes_the_gc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from modalkit_serve._appfile import reload_factory
    from modalkit_serve._logging import shutdown_logging

    app_file = write_app(tmp_path / "svc")
    monkeypatch.delenv("MODALKIT_APP_FILE", raising=False)
    monkeypatch.delenv("MODALKIT_SERVE_APP", raising=False)
    monkeypatch.setenv("MODALKIT_CONFIG", str(app_file.parent / "modalkit.yaml"))
    monkeypatch.setenv(name, str(app_file))
    try:
        app = reload_factory()
    finally:
        shutdown_logging()
    assert "/predict_sync" in {getattr(r, "path", None) for r in app.routes}
    assert app.state.runner.freeze_gc is True  # the reload worker is a server process too


def test_the_log_level_given_to_a_reloading_server_wins_over_a_stale_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modalkit_serve._appfile import LOG_LEVEL_ENV, reload_environment

    app = write_app(tmp_path / "svc")
    monkeypatch.setenv(LOG_LEVEL_ENV, "DEBUG")
    monkeypatch.setenv("MODALKIT_CONFIG", str(app.parent / "modalkit.yaml"))
    env = reload_environment(load_service(app), "WARNING")
    assert env[LOG_LEVEL_ENV] == "WARNING"
    assert env["MODALKIT_APP_FILE"] == str(app.resolve())


# -- a model that fails to load ---------------------------------------------------------------------------------

BROKEN_APP = """
from typing import Any

from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError
from modalkit_serve import ServiceSpec


class In(BaseModel):
    text: str


class Out(InferenceOutputModel):
    text: str


class Broken(InferencePipeline[In, Out]):
    def __init__(self, model_name: str, folder: str, common: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(model_name, folder, common, **kwargs)
        if kwargs.get("broken"):
            raise FileNotFoundError(f"{folder}/private/weights.bin does not exist")

    def preprocess(self, input_list: list[In]) -> dict[str, Any]:
        return {}

    def predict(self, input_list: list[In], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def postprocess(self, input_list: list[In], raw_output: dict[str, Any]) -> list[Out | ItemError]:
        return [Out(text=i.text) for i in input_list]


service = ServiceSpec(Broken)
"""


def write_broken_app(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken_app.py").write_text(BROKEN_APP)
    (folder / "modalkit.yaml").write_text(
        "app_settings: {app_prefix: b}\n"
        f"model_settings:\n  local_model_repository_folder: {folder}\n"
        "  model_entries: {good: {}, bad: {broken: true}}\n"
    )
    return folder / "broken_app.py"


@pytest.mark.e2e
def test_a_model_that_fails_to_load_stops_the_server_with_one_clear_line(tmp_path: Path) -> None:
    app = write_broken_app(tmp_path / "svc")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODALKIT_")}
    result = subprocess.run(
        [sys.executable, "-m", "modalkit_serve.cli", str(app), "--host", "127.0.0.1", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("modalkit-serve: model bad failed to load: FileNotFoundError: "), result.stderr
    assert "--keep-running" in last
    assert "Traceback" not in last


@pytest.mark.e2e
def test_keep_running_serves_the_other_models_and_shows_callers_no_path(tmp_path: Path) -> None:
    app = write_broken_app(tmp_path / "svc")
    with ServedProcess(app, ["--keep-running"], log_dir=tmp_path) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(200):  # the models load in the background
                if "model bad failed to load" in server.stderr():
                    break
                threading.Event().wait(0.05)
            good = client.post("/predict_sync", params={"model_name": "good"}, json={"text": "hi"})
            bad = client.post("/predict_sync", params={"model_name": "bad"}, json={"text": "hi"})
            ready = client.get("/ready")
        assert server.process is not None
        assert server.process.poll() is None  # still up

    assert good.status_code == 200
    assert ready.status_code == 503
    assert bad.status_code == 503
    assert "retry-after" not in bad.headers  # a failed load is not something a retry fixes
    assert bad.json()["detail"] == "model bad failed to load and is not served; the server log says why"
    assert str(tmp_path) not in bad.text
    assert str(tmp_path) not in ready.text
    assert "private/weights.bin" in server.stderr()  # the operator still sees the cause


@pytest.mark.e2e
def test_a_relative_journal_path_lands_beside_the_config_not_in_the_working_directory(tmp_path: Path) -> None:
    app = write_app(tmp_path / "svc")
    config = app.parent / "modalkit.yaml"
    config.write_text(
        config.read_text().replace(
            "server_config: {drain_timeout_seconds: 60}",
            "server_config: {drain_timeout_seconds: 60, journal_path: .modalkit/jobs.sqlite}",
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with ServedProcess(app, log_dir=tmp_path, cwd=elsewhere) as server:
        response = httpx.post(
            f"{server.url}/predict_async", json={"message": {"text": "t"}, "success_queue": "done"}, timeout=10
        )
        assert response.status_code == 202
        job_id = response.json()["job_id"]
        server.stop()

    journal = app.parent / ".modalkit" / "jobs.sqlite"
    assert journal.is_file(), sorted(p.name for p in tmp_path.rglob("*.sqlite*"))
    assert not list(elsewhere.iterdir())  # nothing in the server's working directory
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone() == ("delivered",)
