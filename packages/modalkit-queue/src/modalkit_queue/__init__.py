"""modalkit-queue: reliable, at-least-once delivery of async results to queues.

- :class:`QueueBackend`: the small protocol a backend fulfils (``send``, ``close``, optionally ``send_batch``).
- Backends: :class:`MemoryBackend` (in-process, readable back), :class:`SQSBackend` (extra ``[sqs]``),
  :class:`TaskiqBackend` (extra ``[taskiq]``); :func:`create_backend` builds the one ``queue_config`` names,
  :func:`register_backend` adds your own.
- :class:`ReliableSender`: a thread-safe outbox with retries, backoff, jitter and a dead letter.
- Reading results back: :class:`SQSConsumer` / :func:`receive_sqs`, :class:`TaskiqConsumer`.
- The message: :func:`result_message` builds it (the output JSON object plus ``job_id``); :func:`job_id_of`
  reads the id back, for de-duplication.

Importing this package loads neither boto3 nor taskiq; a backend imports its library when it is built.
"""

from importlib.metadata import version as _version

from modalkit_queue import errors
from modalkit_queue._message import job_id_of, result_message
from modalkit_queue._oneshot import send_response_queue
from modalkit_queue._protocol import BatchQueueBackend, QueueBackend
from modalkit_queue._registry import (
    BackendFactory,
    check_backend,
    create_backend,
    register_backend,
    registered_backends,
    unregister_backend,
)
from modalkit_queue._sender import DeliveryEvent, ReliableSender, RetryPolicy
from modalkit_queue.errors import (
    BatchDeliveryError,
    DeliveryError,
    MessageTooLargeError,
    MissingExtraError,
    OutboxFullError,
    QueueConfigError,
    QueueError,
    QueueNotFoundError,
    SenderClosedError,
    UnknownBackendError,
)
from modalkit_queue.memory import MemoryBackend
from modalkit_queue.sqs import SQSBackend, SQSConsumer, receive_sqs
from modalkit_queue.taskiq import TaskiqBackend, TaskiqConsumer, consumer_broker

__version__ = _version("modalkit-queue")

__all__ = [
    "BackendFactory",
    "BatchDeliveryError",
    "BatchQueueBackend",
    "DeliveryError",
    "DeliveryEvent",
    "MemoryBackend",
    "MessageTooLargeError",
    "MissingExtraError",
    "OutboxFullError",
    "QueueBackend",
    "QueueConfigError",
    "QueueError",
    "QueueNotFoundError",
    "ReliableSender",
    "RetryPolicy",
    "SQSBackend",
    "SQSConsumer",
    "SenderClosedError",
    "TaskiqBackend",
    "TaskiqConsumer",
    "UnknownBackendError",
    "__version__",
    "check_backend",
    "consumer_broker",
    "create_backend",
    "errors",
    "job_id_of",
    "receive_sqs",
    "register_backend",
    "registered_backends",
    "result_message",
    "send_response_queue",
    "unregister_backend",
]
