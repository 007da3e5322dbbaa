"""The batch-cost model and the simulated accelerator (no server; no assertion on measured time)."""

from __future__ import annotations

import threading

import pytest
from batch_cost_model import BatchCost, Features, Score, SimulatedAccelerator, SimulatedGpuPipeline

from modalkit_pipeline.testing import run_pipeline


def test_a_batch_costs_a_fixed_part_plus_a_part_per_input() -> None:
    cost = BatchCost(fixed_ms=20, per_item_ms=0.5)

    assert cost.seconds(1) == pytest.approx(0.0205)
    assert cost.seconds(32) == pytest.approx(0.036)
    assert cost.throughput(1) == pytest.approx(48.78, abs=0.01)  # unbatched
    assert cost.throughput(32) == pytest.approx(888.9, abs=0.1)  # 18x more from the same device
    assert cost.throughput(40) == pytest.approx(cost.throughput(10**9) / 2, rel=1e-6)  # n = fixed/per_item: half of 1/b


def test_the_accelerator_accounts_the_device_time_of_each_batch() -> None:
    device = SimulatedAccelerator(BatchCost(fixed_ms=0.2, per_item_ms=0.01))

    for n in (1, 5, 10):
        device.run(n)

    assert (device.batches, device.items) == (3, 16)
    assert device.busy_seconds == pytest.approx((3 * 0.2 + 16 * 0.01) / 1000)


def test_the_accelerator_runs_one_batch_at_a_time() -> None:
    device = SimulatedAccelerator(BatchCost(fixed_ms=1, per_item_ms=0))
    threads = [threading.Thread(target=device.run, args=(1,)) for _ in range(8)]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert device.batches == 8
    assert device.most_at_once == 1


def test_the_pipeline_runs_each_batch_once_on_the_device_and_reports_its_size() -> None:
    outputs = run_pipeline(
        SimulatedGpuPipeline,
        [{"values": [1, 2]}, {"values": [0.5]}, {"values": []}],
        model_entry={"fixed_ms": 0, "per_item_ms": 0},
    )

    assert [(o.score, o.batch_size) for o in outputs if isinstance(o, Score)] == [(3.0, 3), (0.5, 3), (0.0, 3)]


def test_the_cost_comes_from_the_model_entry() -> None:
    pipeline = SimulatedGpuPipeline("accel", ".", {}, fixed_ms=7, per_item_ms=0.25)
    default = SimulatedGpuPipeline("accel", ".", {})

    assert pipeline.cost == BatchCost(7.0, 0.25)
    assert default.cost == BatchCost(20.0, 0.5)
    assert SimulatedGpuPipeline.io_models() == (Features, Score)
