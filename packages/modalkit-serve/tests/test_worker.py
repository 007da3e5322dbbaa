"""Worker: the one place a batch runs. Per-item isolation, fatal CUDA errors, volume reloads, async delivery."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from modalkit_pipeline import AsyncInputModel, ItemError, SyncInputModel
from modalkit_queue import MemoryBackend, ReliableSender
from modalkit_serve import Worker
from serve_support import ToyInput, ToyOutput, ToyPipeline, new_pipeline, statuses


def read(backend: MemoryBackend, queue: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in backend.messages(queue)]


def sync(*texts: str) -> list[SyncInputModel[ToyInput]]:
    return [SyncInputModel[ToyInput](message=ToyInput(text=t)) for t in texts]


def test_a_good_batch_gives_one_output_per_item_in_order() -> None:
    worker = Worker(new_pipeline())

    results = worker.run_batch(sync("a", "bb", "ccc"))

    assert [r.model_dump() for r in results] == [
        {"status": "success", "error": None, "upper": "A", "length": 1},
        {"status": "success", "error": None, "upper": "BB", "length": 2},
        {"status": "success", "error": None, "upper": "CCC", "length": 3},
    ]


def test_an_item_error_from_the_pipeline_fails_only_that_item() -> None:
    worker = Worker(new_pipeline())

    results = worker.run_batch(sync("a", "item-error", "c"))

    assert isinstance(results[1], ItemError)
    assert results[1].error == "this item is not allowed"
    assert results[1].kind == "input"  # the pipeline's own verdict on the input, kept as it returned it
    assert statuses(results) == ["success", "error", "success"]


def test_a_raising_item_is_isolated_and_the_others_succeed(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = new_pipeline()
    worker = Worker(pipeline)

    with caplog.at_level(logging.ERROR, logger="modalkit.worker"):
        results = worker.run_batch(sync("a", "b", "raise", "d", "e"))

    assert statuses(results) == ["success", "success", "error", "success", "success"]
    bad = results[2]
    assert isinstance(bad, ItemError)
    assert bad.error == "ValueError: cannot handle 'raise'"
    assert bad.kind == "internal"  # the pipeline raised: a server-side failure, not a verdict on the input
    assert "Traceback" not in bad.error
    assert [r.upper for r in results if isinstance(r, ToyOutput)] == ["A", "B", "D", "E"]
    # The stack goes to the log, not to the client.
    assert any(rec.exc_info is not None for rec in caplog.records)
    # The first run saw the whole batch; isolation re-ran smaller pieces.
    assert pipeline.batches[0] == ["a", "b", "raise", "d", "e"]
    assert ["raise"] in pipeline.batches


def test_several_raising_items_each_fail_alone() -> None:
    worker = Worker(new_pipeline())

    results = worker.run_batch(sync("raise", "a", "b", "raise", "c", "d", "e", "raise"))

    assert statuses(results) == ["error", "success", "success", "error", "success", "success", "success", "error"]


def test_a_single_raising_item_gets_an_item_error() -> None:
    results = Worker(new_pipeline()).run_batch(sync("raise"))

    assert isinstance(results[0], ItemError)
    assert results[0].error.startswith("ValueError")
    assert results[0].kind == "internal"


def test_an_output_count_mismatch_is_a_pipeline_bug_and_fails_every_item() -> None:
    pipeline = new_pipeline()
    results = Worker(pipeline).run_batch(sync("a", "count", "c"))

    assert all(isinstance(r, ItemError) and r.kind == "internal" for r in results)
    assert "exactly one output per input" in str(results[0].error)  # type: ignore[attr-defined]
    assert len(pipeline.batches) == 1  # not retried: re-running a buggy pipeline cannot help


def test_an_output_that_is_not_a_model_fails_that_item() -> None:
    results = Worker(new_pipeline()).run_batch(sync("a", "dict"))

    assert statuses(results)[0] == "success"
    assert isinstance(results[1], ItemError)
    assert "dict" in results[1].error
    assert results[1].kind == "internal"  # the pipeline broke its contract; the input is not to blame


def test_a_cuda_error_is_fatal() -> None:
    fatal: list[BaseException] = []
    pipeline = new_pipeline()
    worker = Worker(pipeline, on_fatal=fatal.append)
    assert worker.ready

    results = worker.run_batch(sync("a", "cuda", "c"))

    assert all(isinstance(r, ItemError) and r.kind == "internal" for r in results)
    assert len(fatal) == 1
    assert "CUDA error" in str(fatal[0])
    assert not worker.ready
    assert worker.fatal_error is fatal[0]
    runs = len(pipeline.batches)
    later = worker.run_batch(sync("a"))
    assert isinstance(later[0], ItemError)
    assert "stopped" in later[0].error
    assert later[0].kind == "internal"
    assert len(pipeline.batches) == runs  # it stopped taking work


def test_a_torch_cuda_error_class_is_fatal_by_name() -> None:
    fatal: list[BaseException] = []
    worker = Worker(new_pipeline(), on_fatal=fatal.append)

    worker.run_batch(sync("accel"))

    assert [type(e).__name__ for e in fatal] == ["AcceleratorError"]
    assert not worker.ready


def test_an_on_fatal_callback_that_raises_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def explode(exc: BaseException) -> None:
        raise RuntimeError("callback broke")

    worker = Worker(new_pipeline(), on_fatal=explode)
    with caplog.at_level(logging.ERROR, logger="modalkit.worker"):
        results = worker.run_batch(sync("cuda"))

    assert isinstance(results[0], ItemError)
    assert not worker.ready
    assert "callback broke" in caplog.text


def test_volume_reload_runs_the_reload_then_the_pipeline_hook() -> None:
    pipeline = new_pipeline()
    worker = Worker(pipeline)
    calls: list[str] = []

    assert worker.reload_volumes(lambda: calls.append("reload"))

    assert calls == ["reload"]
    assert pipeline.reloads == 1
    assert worker.on_volume_reload()
    assert pipeline.reloads == 2


def test_a_failing_reload_hook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = new_pipeline()
    pipeline.fail_reload = True
    worker = Worker(pipeline)

    with caplog.at_level(logging.ERROR, logger="modalkit.worker"):
        assert not worker.on_volume_reload()

    assert "volume is gone" in caplog.text
    assert worker.ready  # a failed reload keeps serving the artefacts already loaded


def test_a_failing_volume_reload_skips_the_hook(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = new_pipeline()
    worker = Worker(pipeline)

    def broken() -> None:
        raise OSError("mount unavailable")

    with caplog.at_level(logging.ERROR, logger="modalkit.worker"):
        assert not worker.reload_volumes(broken)

    assert pipeline.reloads == 0
    assert "mount unavailable" in caplog.text


def test_async_results_go_to_their_success_or_failure_queue() -> None:
    backend = MemoryBackend()
    with ReliableSender(backend, dead_letter_file=None) as sender:
        worker = Worker(new_pipeline(), sender=sender)
        ok = AsyncInputModel[ToyInput](
            message=ToyInput(text="hi"), success_queue="done", failure_queue="failed", meta={"trace": 7}
        )
        bad = AsyncInputModel[ToyInput](message=ToyInput(text="raise"), success_queue="done", failure_queue="failed")
        quiet = AsyncInputModel[ToyInput](message=ToyInput(text="shh"))  # no queues: nothing delivered

        results = worker.run_batch([ok, sync("x")[0], bad, quiet], job_ids=["job-ok", None, "job-bad", "job-quiet"])
        assert sender.flush(10)

    assert statuses(results) == ["success", "success", "error", "success"]
    assert backend.queue_names() == ["done", "failed"]
    assert read(backend, "done") == [
        {"status": "success", "error": None, "upper": "HI", "length": 2, "job_id": "job-ok", "meta": {"trace": 7}}
    ]
    [failed] = read(backend, "failed")
    assert failed["job_id"] == "job-bad"
    assert failed["status"] == "error"
    assert failed["error"] == "ValueError: cannot handle 'raise'"
    assert failed["kind"] == "internal"
    assert failed["meta"] == {}
    assert failed["original_message"]["message"] == {"text": "raise"}


def test_async_items_without_job_ids_get_generated_ones() -> None:
    backend = MemoryBackend()
    with ReliableSender(backend, dead_letter_file=None) as sender:
        Worker(new_pipeline(), sender=sender).run_batch(
            [AsyncInputModel[ToyInput](message=ToyInput(text="a"), success_queue="q")]
        )
        assert sender.flush(10)

    [message] = read(backend, "q")
    assert len(message["job_id"]) >= 20


def test_a_sender_that_refuses_is_logged_with_the_payload(caplog: pytest.LogCaptureFixture) -> None:
    closed = ReliableSender(MemoryBackend(), dead_letter_file=None)  # never started: submit raises
    worker = Worker(new_pipeline(), sender=closed)
    item = AsyncInputModel[ToyInput](message=ToyInput(text="a"), success_queue="q")

    with caplog.at_level(logging.ERROR, logger="modalkit.worker"):
        results = worker.run_batch([item], job_ids=["j1"])

    assert statuses(results) == ["success"]
    [record] = [r for r in caplog.records if "j1" in r.getMessage()]
    assert "not running" in record.getMessage()
    assert '"upper":"A"' in record.__dict__["payload"]


def test_async_items_without_a_sender_are_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(new_pipeline())
    item = AsyncInputModel[ToyInput](message=ToyInput(text="a"), success_queue="q")

    with caplog.at_level(logging.ERROR, logger="modalkit.worker"):
        worker.run_batch([item], job_ids=["j2"])

    assert "j2" in caplog.text


def test_an_empty_batch_runs_nothing() -> None:
    pipeline = new_pipeline()
    assert Worker(pipeline).run_batch([]) == []
    assert pipeline.batches == []


def test_worker_exposes_its_pipeline() -> None:
    pipeline = ToyPipeline("toy", ".", {})
    assert Worker(pipeline).pipeline is pipeline


def test_an_input_error_reaches_the_failure_queue_as_the_pipeline_returned_it() -> None:
    backend = MemoryBackend()
    with ReliableSender(backend, dead_letter_file=None) as sender:
        item = AsyncInputModel[ToyInput](message=ToyInput(text="item-error"), failure_queue="failed", meta={"m": 1})
        Worker(new_pipeline(), sender=sender).run_batch([item], job_ids=["job-1"])
        assert sender.flush(10)

    [failed] = read(backend, "failed")
    assert {k: v for k, v in failed.items() if k != "original_message"} == {
        "status": "error",
        "error": "this item is not allowed",
        "index": 0,
        "kind": "input",
        "job_id": "job-1",
        "meta": {"m": 1},
    }


def test_failed_items_carry_the_callers_index_not_the_batch_position() -> None:
    worker = Worker(new_pipeline())
    # Two callers' requests in one batch: [ok, item-error] from one, [raise, ok, item-error] from another.
    messages = [ToyInput(text=t) for t in ("a", "item-error", "raise", "b", "item-error")]

    results = worker.run_messages(list(messages), indices=[0, 1, 0, 1, 2])

    assert statuses(results) == ["success", "error", "error", "success", "error"]
    assert [getattr(r, "index", None) for r in results] == [None, 1, 0, None, 2]


def test_without_indices_a_failed_item_carries_its_position() -> None:
    worker = Worker(new_pipeline())

    results = worker.run_messages([ToyInput(text=t) for t in ("ok", "raise", "ok", "item-error")])

    assert [getattr(r, "index", None) for r in results] == [None, 1, None, 3]


def test_a_queued_failure_carries_the_callers_index() -> None:
    backend = MemoryBackend()
    with ReliableSender(backend, dead_letter_file=None) as sender:
        worker = Worker(new_pipeline(), sender=sender)
        jobs = [
            AsyncInputModel[ToyInput](message=ToyInput(text=t), failure_queue="failed")
            for t in ("a", "item-error", "raise")
        ]
        # Each async job is a request of its own: index 0, whatever its place in the server's batch.
        worker.run_batch([*sync("x", "y"), *jobs], job_ids=[None, None, "j0", "j1", "j2"])
        assert sender.flush(10)

    assert sorted((m["job_id"], m["index"]) for m in read(backend, "failed")) == [("j1", 0), ("j2", 0)]
