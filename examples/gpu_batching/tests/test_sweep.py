"""The sweep script's wiring: the theoretical limit, its table, and one small setting served for real.

No assertion on speed: the figures depend on the machine; the script prints them.
"""

from __future__ import annotations

from typing import Any

import pytest
from batch_cost_model import BatchCost

from modalkit_config import load_settings


def test_the_limit_is_full_batches_back_to_back_capped_by_concurrency(sweep: Any) -> None:
    cost = BatchCost(20, 0.5)

    assert sweep.theoretical_limit(cost, max_batch_size=32, concurrency=64) == pytest.approx(cost.throughput(32))
    assert sweep.theoretical_limit(cost, max_batch_size=128, concurrency=64) == pytest.approx(cost.throughput(64))
    assert sweep.theoretical_limit(cost, max_batch_size=1, concurrency=64) == pytest.approx(cost.throughput(1))


def test_each_server_gets_its_setting_through_modalkit_variables(sweep: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALKIT_APP_POSTFIX", "-leaked")

    env = sweep.server_env(sweep.Setting(max_batch_size=8, wait_ms=3), BatchCost(1.5, 0.25))

    assert "MODALKIT_APP_POSTFIX" not in env
    settings = load_settings([env["MODALKIT_CONFIG"]], env=env, env_file=None)  # what the server will read
    assert (settings.app_settings.batch_config.max_batch_size, settings.app_settings.batch_config.wait_ms) == (8, 3)
    assert settings.model_settings.model_entries["accel"] == {"fixed_ms": 1.5, "per_item_ms": 0.25}


@pytest.mark.e2e
def test_one_sweep_point_served(sweep: Any) -> None:
    """`modalkit serve` with max_batch_size 4 and a tiny cost, 40 requests, 8 in flight."""
    cost = BatchCost(fixed_ms=2, per_item_ms=0.1)

    row = sweep.measure(sweep.Setting(max_batch_size=4, wait_ms=0), cost, requests=40, concurrency=8, warmup=4)

    result = row.result
    assert (result.completed, result.errors) == (40, 0)
    assert all(1 <= size <= 4 for size in result.batch_sizes)  # the served max_batch_size reached the batcher
    assert 0 < result.percentile(50) <= result.percentile(99)
    assert row.limit == pytest.approx(cost.throughput(4))
    line = sweep.format_row(row)
    assert line.split()[:2] == ["4", "0"]
    assert len(line) == len(sweep.HEADER)  # the columns line up under the header
    assert line.split()[-2:-1] == ["0"]  # errors
    assert result.client_busy > 0  # the client used some CPU, and says how much


def test_bad_arguments_are_a_usage_error(sweep: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--batch-sizes", "1,x"])

    assert exit_info.value.code == 2
    assert "expected comma-separated whole numbers (got '1,x')" in capsys.readouterr().err
