"""The two models every benchmarked server runs, so each server does exactly the same work.

Standard library only: the LitServe server imports this file from its own virtual environment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

ACCEL_BASE_SECONDS = 0.020
"""Fixed cost of one call to the simulated accelerator (kernel launch, transfer)."""
ACCEL_PER_ITEM_SECONDS = 0.0005
"""Extra cost per item in the batch."""
MAX_BATCH_SIZE = 32
"""Largest batch every batching server is configured for."""
BATCH_WAIT_SECONDS = 0.005
"""Longest a batching server may wait for a batch to fill (modalkit ``wait_ms``, LitServe ``batch_timeout``)."""


def physical_limit_rps(max_batch_size: int = MAX_BATCH_SIZE) -> float:
    """Requests per second of an accelerator that only ever runs full batches back to back."""
    return max_batch_size / (ACCEL_BASE_SECONDS + ACCEL_PER_ITEM_SECONDS * max_batch_size)


def text_lengths(texts: Sequence[str]) -> list[int]:
    """The trivial model: microseconds of work per batch."""
    return [len(t) for t in texts]


class SimulatedAccelerator:
    """A device that runs one batch at a time and blocks without using the CPU.

    ``time.sleep`` releases the GIL, so the serving process keeps accepting requests while it "computes".
    The lock matters: without it an unbatched thread-pool server would sleep in parallel and look faster
    than any real single device could be.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def run(self, texts: Sequence[str]) -> list[int]:
        """Process one batch; callers queue on the lock like kernels queue on one GPU."""
        with self._lock:
            time.sleep(ACCEL_BASE_SECONDS + ACCEL_PER_ITEM_SECONDS * len(texts))
        return text_lengths(texts)
