"""LitServe 0.2.19 serving the same models with its own batching. Runs in benchmarks/.venv-litserve.

    .venv-litserve/bin/python apps/litserve_app.py {trivial|accel} --port N [--fast-queue]

One API server and one inference worker (one "device"), ``max_batch_size`` 32 and ``batch_timeout`` equal to
modalkit's ``wait_ms``; uvicorn at log level warning (no access log), as for the other servers.
"""

from __future__ import annotations

import argparse
from typing import Any

import litserve as ls
from sim_models import BATCH_WAIT_SECONDS, MAX_BATCH_SIZE, SimulatedAccelerator, text_lengths


class LengthAPI(ls.LitAPI):
    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_kind = model

    def setup(self, device: str) -> None:
        self.accelerator = SimulatedAccelerator()

    # No annotation on `request`: LitServe reads it to build the route and takes a missing one as "raw JSON".
    def decode_request(self, request, **kwargs: Any) -> str:  # type: ignore[no-untyped-def]
        return str(request["text"])

    def predict(self, texts: list[str], **kwargs: Any) -> list[int]:
        if self.model_kind == "accel":
            return self.accelerator.run(texts)
        return text_lengths(texts)

    def encode_response(self, length: int, **kwargs: Any) -> dict[str, Any]:
        return {"status": "success", "error": None, "length": length}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["trivial", "accel"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--batch-timeout", type=float, default=BATCH_WAIT_SECONDS, help="LitServe's batch_timeout (s)")
    parser.add_argument("--fast-queue", action="store_true", help="ZeroMQ queues (LitServe's advice above 100 req/s)")
    args = parser.parse_args()
    api = LengthAPI(
        args.model, max_batch_size=MAX_BATCH_SIZE, batch_timeout=args.batch_timeout, api_path="/predict_sync"
    )
    server = ls.LitServer(
        api, accelerator="cpu", devices=1, workers_per_device=1, timeout=60, fast_queue=args.fast_queue
    )
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
