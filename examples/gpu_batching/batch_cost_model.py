"""A simulated accelerator whose batch cost is ``fixed + per_item * n``: a stand-in for a GPU model.

A real GPU model spends most of a small batch's time on fixed costs (kernel launches, host-device copies,
weights read from memory) and little on each extra input, until the device is full. This model keeps exactly
that shape, and nothing else, so batching settings can be tuned on any machine:

- ``time.sleep`` stands for the device's work: it releases the GIL and uses no CPU, so the serving process
  keeps accepting requests while a batch "runs", as it would while a GPU computes;
- a lock makes it run one batch at a time, as one device does; without it, threads would sleep in parallel and
  look faster than any single device could be.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from modalkit_pipeline import InferenceOutputModel, InferencePipeline, ItemError


@dataclass(frozen=True)
class BatchCost:
    """The time one batch of ``n`` inputs takes: ``fixed_ms + per_item_ms * n`` milliseconds."""

    fixed_ms: float
    """Paid once per batch, whatever its size."""
    per_item_ms: float
    """Paid for each input in the batch."""

    def seconds(self, n: int) -> float:
        """How long a batch of ``n`` inputs takes."""
        return (self.fixed_ms + self.per_item_ms * n) / 1000.0

    def throughput(self, n: int) -> float:
        """Inputs per second when batches of ``n`` run back to back: the most any server can get from it."""
        return n / self.seconds(n)


class SimulatedAccelerator:
    """One device: runs one batch at a time, taking `BatchCost.seconds` for each, using no CPU.

    Attributes:
        batches: Batches run so far.
        items: Inputs run so far.
        busy_seconds: The device time those batches cost (from the cost model, not measured).
    """

    def __init__(self, cost: BatchCost) -> None:
        self.cost = cost
        self.batches = 0
        self.items = 0
        self.busy_seconds = 0.0
        self._lock = threading.Lock()
        self._inside = 0
        self.most_at_once = 0
        """The most batches ever running together: 1 for one device."""

    def run(self, n: int) -> None:
        """Run one batch of ``n`` inputs; callers queue on the lock as kernels queue on one GPU."""
        with self._lock:
            self._inside += 1
            self.most_at_once = max(self.most_at_once, self._inside)
            seconds = self.cost.seconds(n)
            time.sleep(seconds)
            self.batches += 1
            self.items += n
            self.busy_seconds += seconds
            self._inside -= 1


class Features(BaseModel):
    """One input: a vector the "model" reduces to one number."""

    values: list[float]
    """Any numbers (the simulated model sums them)."""


class Score(InferenceOutputModel):
    """One output, with how it was batched."""

    score: float
    """The sum of the input's values."""
    batch_size: int
    """How many inputs shared this input's batch: shows the batching settings at work."""


class SimulatedGpuPipeline(InferencePipeline[Features, Score]):
    """Scores inputs on the simulated accelerator.

    Model entry settings:
        fixed_ms: Fixed cost of one batch, in milliseconds (default 20).
        per_item_ms: Cost of each input in a batch, in milliseconds (default 0.5).
    """

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        self.cost = BatchCost(float(kwargs.get("fixed_ms", 20.0)), float(kwargs.get("per_item_ms", 0.5)))
        self.accelerator = SimulatedAccelerator(self.cost)

    def preprocess(self, input_list: list[Features]) -> dict[str, Any]:
        return {"sums": [sum(item.values) for item in input_list]}

    def predict(self, input_list: list[Features], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        self.accelerator.run(len(input_list))
        return {"scores": preprocessed_data["sums"], "batch_size": len(input_list)}

    def postprocess(self, input_list: list[Features], raw_output: dict[str, Any]) -> list[Score | ItemError]:
        size = raw_output["batch_size"]
        return [Score(score=value, batch_size=size) for value in raw_output["scores"]]
