"""The baselines: a bare FastAPI endpoint on uvicorn, doing the same work as the served models.

    python apps/bare_fastapi.py {trivial|accel} --port N

``trivial``: an ``async def`` endpoint that calls the model inline (the fastest honest FastAPI endpoint).
``accel``: a ``def`` endpoint (FastAPI runs it in its thread pool) that calls the simulated accelerator on
one item per request under its lock: the unbatched baseline.
Same request and response JSON as modalkit's ``/predict_sync``; uvicorn with one worker, its default
loop and HTTP implementations (uvloop, httptools), access log off.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sim_models import SimulatedAccelerator, text_lengths


class TextInput(BaseModel):
    text: str


class LengthOutput(BaseModel):
    status: str = "success"
    error: str | None = None
    length: int


def trivial_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict_sync")
    async def predict_sync(request: TextInput) -> LengthOutput:
        return LengthOutput(length=text_lengths([request.text])[0])

    return app


def accel_app() -> FastAPI:
    app = FastAPI()
    accelerator = SimulatedAccelerator()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict_sync")
    def predict_sync(request: TextInput) -> LengthOutput:
        return LengthOutput(length=accelerator.run([request.text])[0])

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["trivial", "accel"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = trivial_app() if args.model == "trivial" else accel_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
