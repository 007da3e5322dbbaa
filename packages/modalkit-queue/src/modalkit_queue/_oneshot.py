"""`send_response_queue`: one message, delivered through a short-lived `ReliableSender`, waited for.

Here rather than beside the registry, so the registry does not import the sender (which builds its backend
through the registry): the data flows registry -> sender -> this convenience, one way.
"""

from __future__ import annotations

import concurrent.futures
import logging
import uuid

from modalkit_config import QueueConfig, load_settings
from modalkit_queue._message import job_id_of
from modalkit_queue._protocol import QueueBackend
from modalkit_queue._sender import DeliveryEvent, ReliableSender

__all__ = ["send_response_queue"]

logger = logging.getLogger("modalkit_queue")


def send_response_queue(
    queue_name: str,
    queue_message: str,
    *,
    queue_config: QueueConfig | None = None,
    backend: QueueBackend | None = None,
    timeout: float | None = 60.0,
) -> bool:
    """Deliver one message and wait for the outcome: the blocking convenience the earlier modalkit offered.

    It goes through a short-lived :class:`ReliableSender`, so it retries with backoff and dead-letters like
    the served path does. For many messages, keep one ``ReliableSender`` instead: this builds a backend
    (and a thread) per call.

    Args:
        queue_name: Target queue.
        queue_message: JSON text; its ``job_id`` (if any) labels logs and the dead letter.
        queue_config: Where and how to deliver; by default ``app_settings.queue_config`` from
            :func:`modalkit_config.load_settings` (``modalkit.yaml``, or the files ``MODALKIT_CONFIG`` lists),
            read at call time as the earlier modalkit did.
        backend: Use this backend instead of building one from ``queue_config`` (it is closed afterwards).
        timeout: Most seconds to wait for delivery or dead letter.

    Returns:
        ``True`` if the message was delivered, ``False`` if it was dead-lettered or not done in time.

    Raises:
        TypeError: ``queue_message`` is not a string.
        ConfigError: No ``queue_config`` was given and the configuration cannot be read.
        QueueConfigError: The configuration names an unknown backend or is unusable.
        MissingExtraError: The backend's optional library is not installed.
    """
    if not isinstance(queue_message, str):
        raise TypeError(f"send_response_queue: queue_message must be a string (got {type(queue_message).__name__})")
    config = queue_config if queue_config is not None else load_settings().app_settings.queue_config
    outcome: concurrent.futures.Future[bool] = concurrent.futures.Future()

    def on_event(event: DeliveryEvent) -> None:
        if event.kind != "retry" and not outcome.done():
            outcome.set_result(event.kind == "delivered")

    sender = ReliableSender.from_config(config, backend=backend, on_event=on_event).start()
    done = False
    try:
        sender.submit(queue_name, queue_message, job_id_of(queue_message) or f"adhoc-{uuid.uuid4().hex}")
        delivered = outcome.result(timeout=timeout)
        done = True
        return delivered
    except concurrent.futures.TimeoutError:
        logger.error("send_response_queue: no outcome for queue %r within %ss", queue_name, timeout)
        return False
    finally:
        # Not done in time: close(0) writes the message to the dead-letter file rather than lose it.
        sender.close(timeout=None if done else 0)
