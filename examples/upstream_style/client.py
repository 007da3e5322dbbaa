"""The earlier README's step 5, "Use your API": sync, batch and async calls, here against `modalkit serve`.

    uv run python examples/upstream_style/client.py --api-key dev-key [--url http://127.0.0.1:8000]

The async request is the earlier `AsyncInputModel` (from ``modalkit.iomodel``); its answer is ``{"job_id": ...}``
and the result goes to ``success_queue``. Here the queue backend is ``memory``, so the client reads the result
from ``GET /jobs/{job_id}`` instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel

from modalkit.iomodel import AsyncInputModel, AsyncOutputModel

DEFAULT_URL = "http://127.0.0.1:8000"


class TextInput(BaseModel):
    """The service's input model, declared again on the client side (importing app.py would read its config)."""

    text: str
    language: str = "en"


def text_input(text: str) -> dict[str, str]:
    """One request body."""
    return TextInput(text=text).model_dump()


def call_api(url: str, api_key: str, *, job_timeout: float = 30.0) -> dict[str, Any]:
    """Call the three predict routes; returns what each answered (the async one once its job finished).

    Raises:
        httpx.HTTPStatusError: a route answered an error (401 for a wrong key).
        TimeoutError: the async job did not finish within ``job_timeout`` seconds.
    """
    headers = {"x-api-key": api_key}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
        sync = client.post("/predict_sync", json=text_input("Hello world")).raise_for_status().json()
        batch = client.post("/predict_batch", json=[text_input("Hello"), text_input("World")]).raise_for_status().json()

        request = AsyncInputModel[TextInput](
            message=TextInput(text="Process this"), success_queue="results", failure_queue="errors", meta={"user": 7}
        )
        accepted = AsyncOutputModel.model_validate(
            client.post("/predict_async", json=request.model_dump(mode="json")).raise_for_status().json()
        )
        deadline = time.monotonic() + job_timeout
        while True:
            job = client.get(f"/jobs/{accepted.job_id}").raise_for_status().json()
            if job["status"] in ("success", "error"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {accepted.job_id} still {job['status']} after {job_timeout}s")
            time.sleep(0.05)
    return {"predict_sync": sync, "predict_batch": batch, "predict_async": job}


def main(argv: Sequence[str] | None = None) -> int:
    """Print what each route answered; exit 1 when the service refused or failed."""
    parser = argparse.ArgumentParser(prog="client.py", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    parser.add_argument("--api-key", required=True, help="a key listed in TRANSLATION_API_KEY on the server")
    args = parser.parse_args(argv)
    try:
        answers = call_api(args.url, args.api_key)
    except (httpx.HTTPError, TimeoutError) as exc:
        print(f"client.py: error: {exc}", file=sys.stderr)
        return 1
    for route, answer in answers.items():
        print(f"{route}: {json.dumps(answer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
