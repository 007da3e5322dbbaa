"""The anomaly pipeline in process: a robust Gaussian envelope over each reading and its sensor's recent history."""

from __future__ import annotations

import random

import pytest
from anomaly_model import AnomalyPipeline, Reading, Score
from pydantic import ValidationError


@pytest.fixture(scope="module")
def pipeline() -> AnomalyPipeline:
    # One fit for the module (it takes seconds); each test uses sensors of its own, so their histories don't mix.
    return AnomalyPipeline("detector", "", {})


def normal_readings(n: int, seed: int, prefix: str) -> list[Reading]:
    rng = random.Random(seed)
    return [Reading(sensor=f"{prefix}{i % 5}", value=rng.gauss(20.0 + i % 5, 1.0)) for i in range(n)]


def scores(pipeline: AnomalyPipeline, readings: list[Reading]) -> list[Score]:
    out = pipeline.run_inference(readings)
    assert all(isinstance(s, Score) for s in out)
    return [s for s in out if isinstance(s, Score)]


def test_a_spike_is_an_anomaly_and_steady_readings_are_not(pipeline: AnomalyPipeline) -> None:
    scores(pipeline, normal_readings(200, seed=1, prefix="spike"))  # warm the sensors' history
    readings = normal_readings(300, seed=2, prefix="spike")
    readings[40] = Reading(sensor="spike0", value=95.0)
    readings[170] = Reading(sensor="spike3", value=-40.0)
    out = scores(pipeline, readings)

    flagged = [i for i, s in enumerate(out) if s.anomaly]
    assert 40 in flagged
    assert 170 in flagged
    assert len(flagged) <= 6  # at most 1% false alarms on steady readings (4 of 298 at most)
    assert out[40].score > max(s.score for i, s in enumerate(out) if i not in flagged)


def test_a_jump_that_is_normal_elsewhere_is_an_anomaly_for_its_sensor(pipeline: AnomalyPipeline) -> None:
    # 24.5 is a usual value for jump4 but far from jump0's history around 20: the history features catch it.
    scores(pipeline, normal_readings(400, seed=3, prefix="jump"))
    [s0, s4] = scores(pipeline, [Reading(sensor="jump0", value=26.0), Reading(sensor="jump4", value=24.5)])

    assert s0.anomaly
    assert not s4.anomaly
    assert abs(s0.deviation) > 4 * abs(s4.deviation)


def test_the_order_within_a_batch_is_the_stream_order(pipeline: AnomalyPipeline) -> None:
    # The history updates reading by reading: a sensor that moves to a new level stops alarming once it settled.
    scores(pipeline, [Reading(sensor="level", value=10.0) for _ in range(100)])
    out = scores(pipeline, [Reading(sensor="level", value=30.0) for _ in range(300)])

    assert out[0].anomaly
    assert not any(s.anomaly for s in out[-50:])


def test_a_reading_that_is_not_a_finite_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="finite number"):
        Reading(sensor="a", value=float("nan"))
    with pytest.raises(ValidationError, match="finite number"):
        Reading(sensor="a", value=float("inf"))
