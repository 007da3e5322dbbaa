"""The result message modalkit delivers to queues, and how consumers read its job id.

The message is JSON text: the pipeline's output object, with ``job_id`` set to the async job's id and, when
the request carried one, ``meta`` set to the request's ``meta``. For example::

    {"status": "success", "error": null, "label": "positive", "job_id": "2f0c...", "meta": {"user": 7}}

This is the shape the earlier modalkit sent (``output.model_dump_json()`` with meta added), plus ``job_id``.
Delivery is at-least-once, so the same ``job_id`` can arrive twice: consumers keep the first and drop the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["job_id_of", "result_message"]


def result_message(output: BaseModel | Mapping[str, Any], job_id: str, meta: Mapping[str, Any] | None = None) -> str:
    """Build the JSON text delivered for one async job.

    Args:
        output: The pipeline's output model (or an already-dumped mapping).
        job_id: The async job's id; it overrides any ``job_id`` field the output had.
        meta: The request's ``meta``; added as ``meta`` when given (``None`` leaves the output's own field alone).

    Returns:
        A JSON object as text.

    Raises:
        TypeError: ``job_id`` is not a non-empty string, or the output is not a model or mapping.
    """
    if not isinstance(job_id, str) or not job_id:
        raise TypeError(f"job_id must be a non-empty string (got {job_id!r})")
    if isinstance(output, BaseModel):
        body: dict[str, Any] = output.model_dump(mode="json")
    elif isinstance(output, Mapping):
        body = dict(output)
    else:
        raise TypeError(f"output must be a pydantic model or a mapping (got {type(output).__name__})")
    body["job_id"] = job_id
    if meta is not None:
        body["meta"] = dict(meta)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def job_id_of(message: str | bytes) -> str | None:
    """The ``job_id`` of a delivered result message, or ``None`` when it has none (or is not a JSON object).

    Consumers use it to drop duplicates, since delivery is at-least-once.
    """
    try:
        body = json.loads(message)
    except (ValueError, TypeError):
        return None
    if isinstance(body, dict):
        value = body.get("job_id")
        if isinstance(value, str):
            return value
    return None
