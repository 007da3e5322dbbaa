"""BentoML 1.4.40 serving the MiniLM with its adaptive batching. Runs in benchmarks/.venv-minilm-bentoml.

    .venv-minilm-bentoml/bin/bentoml serve minilm_bentoml:MiniLMService --working-dir apps --port N

One worker, ``max_batch_size`` 32. BentoML has no fixed wait window: its dispatcher decides how long to hold
requests from the latencies it has measured, within ``max_latency_ms``, which is a deadline after which it
answers 503. It is set to 60 s (the other servers' request timeout) so that no request is shed. A batchable
API takes a list: each request is ``{"texts": ["..."]}`` and is answered with a list of one embedding.
"""

from __future__ import annotations

import bentoml
from minilm_model import MAX_BATCH_SIZE, embed_batch, load


@bentoml.service(workers=1, traffic={"timeout": 60})
class MiniLMService:
    def __init__(self) -> None:
        self.model = load()

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=60_000, route="/predict_sync")
    def predict_sync(self, texts: list[str]) -> list[list[float]]:
        return embed_batch(self.model, texts)
