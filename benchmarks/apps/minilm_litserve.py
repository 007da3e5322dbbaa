"""LitServe 0.2.19 serving the MiniLM with its own batching. Runs in benchmarks/.venv-minilm-litserve.

    .venv-minilm-litserve/bin/python apps/minilm_litserve.py --port N

One API server and one inference worker, ``max_batch_size`` 32 and ``batch_timeout`` 5 ms (modalkit's
``max_batch_size`` and ``wait_ms``); uvicorn at log level warning (no access log).
"""

from __future__ import annotations

import argparse
from typing import Any

import litserve as ls
from minilm_model import BATCH_WAIT_SECONDS, MAX_BATCH_SIZE, embed_batch, load


class MiniLMAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = load()

    # No annotation on `request`: LitServe reads it to build the route and takes a missing one as "raw JSON".
    def decode_request(self, request, **kwargs: Any) -> str:  # type: ignore[no-untyped-def]
        return str(request["text"])

    def predict(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return embed_batch(self.model, texts)

    def encode_response(self, vector: list[float], **kwargs: Any) -> dict[str, Any]:
        return {"embedding": vector}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    api = MiniLMAPI(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_WAIT_SECONDS, api_path="/predict_sync")
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, timeout=60)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
