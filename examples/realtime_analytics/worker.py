"""The consumer: a taskiq worker that keeps running totals of the scored readings in Redis.

    cd examples/realtime_analytics && uv run taskiq worker worker:broker --workers 1

The service kicks each verdict to the ``readings-scored`` Redis stream as a taskiq task named like the queue;
this worker receives them and keeps, in the same Redis:

- ``analytics:readings``: a hash, readings per sensor;
- ``analytics:anomalies``: a list, one JSON object per anomaly (sensor, value, score, the reading's ``seq``);
- ``analytics:failures``: a list, the messages of readings the model could not score;
- ``analytics:lag_ms``: a list, per reading, the milliseconds from when the client sent it (``meta.sent_at``)
  until this worker had it: the end-to-end lag.

Delivery is at least once, so each ``job_id`` is counted once (``SET NX`` on ``analytics:seen:<job_id>``, kept a
day). ``ANALYTICS_REDIS_URL`` sets the Redis (default ``redis://127.0.0.1:6379/0``, as in modalkit.yaml).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis.asyncio as aioredis

from modalkit_queue import job_id_of
from modalkit_queue.taskiq import consumer_broker

REDIS_URL = os.environ.get("ANALYTICS_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "readings-scored"
SEEN_TTL_SECONDS = 86_400

broker = consumer_broker(REDIS_URL, QUEUE)
_store: aioredis.Redis | None = None


def store() -> aioredis.Redis:
    global _store  # one client a worker process, made on first use
    if _store is None:
        _store = aioredis.from_url(REDIS_URL)
    return _store


async def record(message: str, received_at: float) -> bool:
    """Add one verdict to the totals; False when its job was counted already (a repeated delivery)."""
    result: dict[str, Any] = json.loads(message)
    redis = store()
    job_id = job_id_of(message)
    if job_id is not None and not await redis.set(f"analytics:seen:{job_id}", 1, nx=True, ex=SEEN_TTL_SECONDS):
        return False
    meta = result.get("meta") or {}
    pipe = redis.pipeline(transaction=False)
    if result.get("status") == "success":
        pipe.hincrby("analytics:readings", result["sensor"], 1)
        if result["anomaly"]:
            anomaly = {k: result[k] for k in ("sensor", "value", "score", "deviation")} | {"seq": meta.get("seq")}
            pipe.rpush("analytics:anomalies", json.dumps(anomaly))
    else:
        pipe.rpush("analytics:failures", message)
    if isinstance(meta.get("sent_at"), int | float):
        pipe.rpush("analytics:lag_ms", round((received_at - meta["sent_at"]) * 1000, 2))
    await pipe.execute()
    return True


@broker.task(task_name=QUEUE)
async def on_verdict(message: str) -> None:
    """One verdict from the service: the pipeline's output as JSON, plus ``job_id`` and the request's ``meta``."""
    await record(message, time.time())
