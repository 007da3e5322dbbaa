"""ModalService with the real modal package, offline: ``.local()`` runs the enter hook and real inference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import modal
import modal.experimental
import pytest
from modal._serialization import deserialize, serialize  # what Modal does to every input and result
from modal.types import FunctionInfo
from pydantic import BaseModel, ValidationError
from pytest_mock import MockerFixture

from modalkit import AsyncJobInput, ModalConfig, ModalService
from modalkit._service import service_class
from modalkit.errors import ServiceDefinitionError
from modalkit.iomodel import AsyncInputModel, ItemError, SyncInputModel
from modalkit_config import settings_from_dict

from .conftest import APPS, FIXTURES, LoadApp

LOCAL_VOLUME_WARNING = "ignore:.*executing locally and will not have access to the mounted Volume:UserWarning"


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    # A bound on waiting for background delivery, not a speed assertion.
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def _async(input_model: Any, **fields: Any) -> AsyncInputModel[Any]:
    wrapper: Any = AsyncInputModel[input_model]
    return cast("AsyncInputModel[Any]", wrapper(**fields))


def _job_input(input_model: Any) -> Any:
    """``AsyncJobInput[input_model]`` (the model is only known at run time)."""
    return AsyncJobInput[input_model]


def _sync(module: Any, *texts: str) -> list[SyncInputModel[Any]]:
    return [SyncInputModel[module.TextInput](message=module.TextInput(text=t)) for t in texts]


@pytest.fixture
def translation(load_app: LoadApp) -> Any:
    return load_app("modal_translation_app.py", FIXTURES / "translation.yaml")


def test_readme_flow_reaches_modal_with_the_configured_batching(translation: Any) -> None:
    info = translation.TranslationApp._get_class_service_function().info()
    assert info.batching_info == FunctionInfo.BatchingInfo(max_batch_size=8, wait_ms=10)
    assert info.gpus == [("T4", 1)]
    assert info.method_names == ["process_request"]


def test_local_call_runs_the_enter_hook_and_real_inference(translation: Any) -> None:
    service = translation.TranslationApp(model_name="translation_model")
    results = service.process_request.local(_sync(translation, "hello world", "good cat"))
    assert [r.translation for r in results] == ["bonjour monde", "bon chat"]
    assert all(r.status == "success" for r in results)


def test_model_name_parameter_selects_the_model_entry(translation: Any) -> None:
    service = translation.TranslationApp(model_name="slang_model")
    [result] = service.process_request.local(_sync(translation, "good night"))
    assert result.translation == "bon nuitée"  # slang_model's extra_words reached the pipeline


def test_one_failing_item_does_not_fail_the_batch(translation: Any) -> None:
    service = translation.TranslationApp(model_name="translation_model")
    results = service.process_request.local(_sync(translation, "hello", "boom", "cat"))
    assert results[0].translation == "bonjour"
    assert isinstance(results[1], ItemError)
    assert "boom is not a word" in results[1].error
    assert results[2].translation == "chat"


def test_item_errors_say_where_the_failure_lies_and_keep_it_on_the_way_back(translation: Any) -> None:
    service = translation.TranslationApp(model_name="translation_model")
    results = service.process_request.local(_sync(translation, "boom", " "))
    raised, refused = (deserialize(serialize(r), None) for r in results)  # as the web function receives them
    assert isinstance(raised, ItemError)
    assert isinstance(refused, ItemError)
    assert (raised.kind, refused.kind) == ("internal", "input")
    assert refused.error == "nothing to translate"


def test_requests_may_arrive_as_plain_dicts(translation: Any) -> None:
    service = translation.TranslationApp(model_name="translation_model")
    [result] = service.process_request.local([{"message": {"text": "world"}}])
    assert result.translation == "monde"


def test_unknown_model_name_is_refused_with_the_known_ones(translation: Any) -> None:
    service = translation.TranslationApp(model_name="nope")
    with pytest.raises(ServiceDefinitionError, match=r"'nope'.*slang_model, translation_model"):
        service.process_request.local(_sync(translation, "hello"))


def test_each_subclass_batches_as_its_own_config_says(load_app: LoadApp) -> None:
    module = load_app("modal_two_configs_app.py", FIXTURES / "translation.yaml")
    small = module.Small._get_class_service_function().info().batching_info
    large = module.Large._get_class_service_function().info().batching_info
    assert (small.max_batch_size, small.wait_ms) == (2, 5)
    assert (large.max_batch_size, large.wait_ms) == (64, 250)


def test_cuda_error_stops_fetching_inputs(translation: Any, mocker: MockerFixture) -> None:
    # Modal's side of stop_fetching_inputs (the container's input stream) is the one thing replaced.
    stop = mocker.patch.object(modal.experimental, "stop_fetching_inputs")
    service = translation.TranslationApp(model_name="translation_model")
    results = service.process_request.local(_sync(translation, "hello", "gpu melt"))
    stop.assert_called_once_with()
    assert all(isinstance(r, ItemError) for r in results)
    [after] = service.process_request.local(_sync(translation, "hello"))
    assert isinstance(after, ItemError)  # the worker takes no more work on a broken GPU
    assert "fatal" in after.error


@pytest.mark.filterwarnings(LOCAL_VOLUME_WARNING)
def test_async_results_go_to_the_class_attribute_backend(load_app: LoadApp) -> None:
    module = load_app("modal_queue_app.py", FIXTURES / "queue.yaml")
    text_input = sys.modules["translation_pipeline"].TextInput
    requests = [
        _async(text_input, message=text_input(text="cat"), success_queue="done", meta={"n": 1}),
        _async(text_input, message=text_input(text="boom"), failure_queue="failed", meta={"n": 2}),
    ]
    results = module.QueueApp(model_name="translation_model").process_request.local(requests)
    assert results[0].translation == "chat"
    _wait_for(lambda: module.BACKEND.messages("done") and module.BACKEND.messages("failed"), "both deliveries")
    [done] = [json.loads(m) for m in module.BACKEND.messages("done")]
    [failed] = [json.loads(m) for m in module.BACKEND.messages("failed")]
    assert (done["translation"], done["meta"]) == ("chat", {"n": 1})
    assert (failed["status"], failed["meta"]) == ("error", {"n": 2})
    assert failed["original_message"]["message"] == {"text": "boom"}


@pytest.mark.filterwarnings(LOCAL_VOLUME_WARNING)
def test_an_earlier_style_backend_still_receives_results(load_app: LoadApp) -> None:
    module = load_app("modal_queue_app.py", FIXTURES / "queue.yaml")
    text_input = sys.modules["translation_pipeline"].TextInput
    request = _async(text_input, message=text_input(text="hello"), success_queue="legacy")
    module.EarlierQueueApp(model_name="translation_model").process_request.local([request])
    _wait_for(lambda: bool(module.EARLIER.sent), "the earlier-style backend")
    [(queue, message)] = module.EARLIER.sent
    assert queue == "legacy"
    assert json.loads(message)["translation"] == "bonjour"


def test_each_async_request_in_a_batch_is_delivered_under_its_own_job_id(load_app: LoadApp) -> None:
    module = load_app("modal_queue_app.py", FIXTURES / "queue.yaml")
    text_input = sys.modules["translation_pipeline"].TextInput
    job = _job_input(text_input)
    requests = [
        job(message=text_input(text="cat"), success_queue="done", meta={"n": 0}, job_id="job-cat"),
        job(message=text_input(text="boom"), failure_queue="failed", meta={"n": 1}, job_id="job-boom"),
        {"message": {"text": "hello"}, "success_queue": "done", "meta": {"n": 2}, "job_id": "job-hello"},  # as a dict
    ]
    service = _raw_service(module.QueueApp, "translation_model")
    service.load_artefacts()
    service.process_request(requests)
    service.process_request(requests)  # Modal retried the batch: the same ids again
    service.drain()
    messages = [json.loads(m) for m in module.BACKEND.messages("done") + module.BACKEND.messages("failed")]
    delivered = sorted((m["job_id"], m["meta"]["n"]) for m in messages)
    assert delivered == sorted([("job-cat", 0), ("job-boom", 1), ("job-hello", 2)] * 2)
    assert all(set(m["meta"]) == {"n"} for m in messages)
    [failed, _] = [m for m in messages if m["status"] == "error"]
    assert "job_id" not in failed["original_message"]  # the request as the client sent it


def test_a_plain_async_request_gets_a_new_job_id_each_run(load_app: LoadApp) -> None:
    module = load_app("modal_queue_app.py", FIXTURES / "queue.yaml")
    text_input = sys.modules["translation_pipeline"].TextInput
    request = _async(text_input, message=text_input(text="cat"), success_queue="plain")
    service = _raw_service(module.QueueApp, "translation_model")
    service.load_artefacts()
    service.process_request([request])
    service.process_request([request])
    service.drain()
    first, second = (json.loads(m)["job_id"] for m in module.BACKEND.messages("plain"))
    assert first != second  # no id travelled with it: send an AsyncJobInput to choose the id


class _Text(BaseModel):
    text: str


def test_an_async_job_input_checks_its_job_id_and_keeps_it_out_of_dumps() -> None:
    job: Any = AsyncJobInput[_Text]
    request = job(message=_Text(text="cat"), job_id="Hj3-_x9")
    assert request.job_id == "Hj3-_x9"
    assert request.model_dump() == {"message": {"text": "cat"}, "success_queue": "", "failure_queue": "", "meta": {}}
    for bad in ("", "../etc/passwd", "x" * 129, "a b"):
        with pytest.raises(ValidationError, match="job_id"):
            job(message=_Text(text="cat"), job_id=bad)


def test_the_job_id_survives_modal_serialization_into_another_interpreter(load_app: LoadApp) -> None:
    load_app("modal_queue_app.py", FIXTURES / "queue.yaml")
    text_input = sys.modules["translation_pipeline"].TextInput
    job = _job_input(text_input)
    payload = serialize(job(message=text_input(text="cat"), success_queue="q", meta={"n": 1}, job_id="job-1"))
    code = (
        "import sys\n"
        "from modal._serialization import deserialize\n"
        "from modalkit_pipeline import AsyncInputModel\n"
        "item = deserialize(sys.stdin.buffer.read(), None)\n"
        "assert isinstance(item, AsyncInputModel), type(item)\n"
        "print(item.job_id, item.model_dump_json())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(APPS)}
    out = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, env=env, check=True)
    job_id, dumped = out.stdout.decode().split(" ", 1)
    assert job_id == "job-1"
    assert json.loads(dumped) == {
        "message": {"text": "cat"},
        "success_queue": "q",
        "failure_queue": "",
        "meta": {"n": 1},
    }


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _raw_service(cls: Any, model_name: str) -> Any:
    """The user's class instance, as Modal's container builds it (no __init__, parameters set)."""
    user_cls = service_class(cls)
    assert user_cls is not None
    service = user_cls.__new__(user_cls)
    service.model_name = model_name
    return service


def test_volumes_reload_on_the_interval_then_the_pipeline_hook_runs(
    load_app: LoadApp, monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture
) -> None:
    module = load_app("modal_queue_app.py", FIXTURES / "queue.yaml")
    clock = _Clock()
    monkeypatch.setattr("modalkit._service.time", clock)
    # The real Volume object the class mounts; only its reload (a call to Modal's servers) is replaced.
    reload = mocker.patch.object(module.config.volumes["/models"], "reload")
    service = _raw_service(module.QueueApp, "translation_model")
    service.load_artefacts()
    try:
        batch = _sync(sys.modules["translation_pipeline"], "cat")
        service.process_request(batch)
        assert reload.call_count == 0  # interval (30 s) not reached
        clock.now += 31
        service.process_request(batch)
        assert reload.call_count == 1
        assert service._modalkit_worker.pipeline.reloads == 1  # on_volume_reload ran after the reload
        clock.now += 5
        service.process_request(batch)
        assert reload.call_count == 1
    finally:
        service.drain()


def test_no_reload_when_the_interval_is_unset(
    translation: Any, monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture
) -> None:
    clock = _Clock()
    monkeypatch.setattr("modalkit._service.time", clock)
    reload_volumes = mocker.patch.object(translation.config, "reload_volumes")
    service = _raw_service(translation.TranslationApp, "translation_model")
    service.load_artefacts()
    clock.now += 10**6
    service.process_request(_sync(translation, "cat"))
    service.drain()
    reload_volumes.assert_not_called()


def test_exit_hook_drains_pending_deliveries(load_app: LoadApp) -> None:
    module = load_app("modal_queue_app.py", FIXTURES / "queue.yaml")
    service = _raw_service(module.QueueApp, "translation_model")
    service.load_artefacts()
    text_input = sys.modules["translation_pipeline"].TextInput
    requests = [_async(text_input, message=text_input(text=f"cat {i}"), success_queue="drained") for i in range(20)]
    service.process_request(requests)
    service.drain()
    assert len(module.BACKEND.messages("drained")) == 20


@pytest.mark.filterwarnings(LOCAL_VOLUME_WARNING)
def test_async_results_reach_the_queue_before_process_request_returns(load_app: LoadApp) -> None:
    module = load_app("modal_queue_app.py", FIXTURES / "queue.yaml")
    text_input = sys.modules["translation_pipeline"].TextInput
    job = _job_input(text_input)
    requests = [
        job(message=text_input(text="cat"), success_queue="slow", job_id="job-cat"),
        job(message=text_input(text="boom"), failure_queue="slow-failed", job_id="job-boom"),
        _sync(sys.modules["translation_pipeline"], "hello")[0],
    ]

    results = module.SlowQueueApp(model_name="translation_model").process_request.local(requests)

    # Nothing drained the container's outbox (no exit hook ran): a container lost now, after the return that
    # Modal records as the call's result, must lose no delivery. So each result is with the queue already.
    assert [r.status for r in results] == ["success", "error", "success"]
    assert [json.loads(m)["job_id"] for m in module.SLOW.messages("slow")] == ["job-cat"]
    assert [json.loads(m)["job_id"] for m in module.SLOW.messages("slow-failed")] == ["job-boom"]


# --- definition errors ----------------------------------------------------------------------------------------


def _config() -> ModalConfig:
    data = {"app_settings": {"app_prefix": "x"}, "model_settings": {"model_entries": {"m": {}}}}
    return ModalConfig(settings_from_dict(data), config_files=[])


def test_an_init_works_outside_modal_and_modal_refuses_it_under_app_cls() -> None:
    class WithInit(ModalService):
        def __init__(self, x: int) -> None:
            super().__init__(queue_backend="backend")
            self.x = x

    made = WithInit(3)
    assert (made.x, made.queue_backend) == (3, "backend")
    with pytest.raises(modal.exception.InvalidError, match=r"__init__[\s\S]*@modal.enter"):
        modal.App("with-init").cls(serialized=True)(WithInit)


def test_batched_method_is_built_from_the_subclass_config() -> None:
    config = _config()

    class Svc(ModalService):
        modal_utils = config

    assert isinstance(Svc.__dict__["process_request"], modal.partial_function.PartialFunction)
    assert not hasattr(ModalService, "process_request")


def test_a_subclass_may_write_its_own_batched_method() -> None:
    config = _config()

    class Own(ModalService):
        modal_utils = config

        @modal.batched(max_batch_size=3, wait_ms=1)
        def process_request(self, requests: list[Any]) -> list[Any]:
            return requests

        mine = process_request

    assert Own.__dict__["process_request"] is Own.__dict__["mine"]


def test_a_model_entry_that_does_not_fit_the_pipeline_fails_the_class_at_its_line(tmp_path: Any) -> None:
    from modalkit_config import ConfigValidationError, load_settings

    from .apps.translation_pipeline import TranslationModel

    class Weighted(TranslationModel):
        def __init__(self, model_name: str, folder: str, common: dict[str, Any], *, weights: str = "w") -> None:
            super().__init__(model_name, folder, common, weights=weights)

    path = tmp_path / "modalkit.yaml"
    path.write_text("app_settings: {app_prefix: x}\nmodel_settings:\n  model_entries:\n    m: {wieghts: a.bin}\n")
    config = ModalConfig(load_settings(path, env={}, env_file=None), config_files=[])
    # At import of the app file, so `modal deploy` stops before anything is uploaded.
    with pytest.raises(ConfigValidationError) as info:

        class Svc(ModalService):
            inference_implementation = Weighted
            modal_utils = config
            model_name: str = modal.parameter(default="m")

    assert str(info.value).startswith(f"{path}:4: model_settings.model_entries.m.wieghts: unknown argument")
    assert "did you mean 'weights'?" in str(info.value)
