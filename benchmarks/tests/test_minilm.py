"""Scenario (d), the real model: answer checks, batch logs, and each framework's server really running the MiniLM."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import _minilm
import serving
from _servers import Probe, ServerProcess

UNIT = [1.0] + [0.0] * 383


def test_the_embedding_is_found_in_every_frameworks_answer() -> None:
    for answer in (
        {"status": "success", "error": None, "embedding": UNIT},  # modalkit
        {"embedding": UNIT},  # bare FastAPI, LitServe
        [UNIT],  # BentoML's batchable API
    ):
        assert _minilm.embedding_of(json.dumps(answer).encode()) == UNIT


def test_no_embedding_is_found_where_there_is_none() -> None:
    assert _minilm.embedding_of(b"not json") is None
    assert _minilm.embedding_of(json.dumps({"embedding": [1.0] * 10}).encode()) is None
    assert _minilm.embedding_of(json.dumps({"status": "error", "error": "boom"}).encode()) is None


def test_an_answer_is_right_only_with_status_200_and_a_unit_vector() -> None:
    body = json.dumps({"embedding": UNIT}).encode()
    assert _minilm.answer_ok(Probe(200, body, 0.01))
    assert not _minilm.answer_ok(Probe(500, body, 0.01))
    assert not _minilm.answer_ok(Probe(200, json.dumps({"embedding": [0.5] + [0.0] * 383}).encode(), 0.01))


def test_the_batch_log_gives_sum_and_count(tmp_path: Path) -> None:
    log = tmp_path / "batches.log"
    assert _minilm.batch_log_totals(log) == (0.0, 0.0)
    log.write_text("32\n7\n1\n")
    assert _minilm.batch_log_totals(log) == (40.0, 3.0)


def test_an_unknown_framework_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown framework 'ray'"):
        _minilm.peer_python("ray", print)


def test_cosine_of_a_vector_with_itself_is_one() -> None:
    v = [0.3, -0.4, 0.5]
    assert _minilm.cosine(v, v) == pytest.approx(1.0)
    assert _minilm.cosine(v, [-x for x in v]) == pytest.approx(-1.0)


@pytest.fixture(scope="module")
def scenario() -> serving.Scenario:
    scenarios = serving.minilm_scenario()
    if not scenarios:
        pytest.skip("the embeddings example's venv could not be built here")
    return scenarios[0]


@pytest.mark.parametrize("name", [serving.MINILM_BARE, "modalkit", serving.LITSERVE, serving.BENTOML])
def test_each_server_runs_the_real_model_and_logs_its_batches(
    scenario: serving.Scenario, name: str, tmp_path: Path
) -> None:
    contender = next((c for c in scenario.contenders if c.name == name), None)
    if contender is None:
        pytest.skip(f"{name}'s venv could not be built here")
    assert contender.batch_log is not None
    env = {"MINILM_BATCH_LOG": str(contender.batch_log)}
    server = ServerProcess(name, contender.argv, tmp_path / "server.log", env)
    server.start()
    try:
        server.wait_ready(contender.ready_path, timeout_s=120)
        probe = server.request("POST", scenario.path, contender.body)
        assert scenario.answer_ok(probe), probe
        vector = _minilm.embedding_of(probe.body)
        assert vector is not None
        assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-3)
        assert _minilm.batch_log_totals(contender.batch_log) == (1.0, 1.0)
    finally:
        server.stop()
