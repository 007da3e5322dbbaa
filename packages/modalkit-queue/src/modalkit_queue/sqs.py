"""Amazon SQS: the ``sqs`` backend and a consumer to read results back. Needs ``modalkit-queue[sqs]`` (boto3).

boto3 is blocking, so the backend never calls it on the event loop: every call runs on the backend's own
small thread pool. Queue URLs are looked up once and cached. A queue that does not exist is an error unless
``create_missing`` is on (off by default, so a typo fails loudly instead of creating a queue nobody reads).
FIFO queues (a ``.fifo`` name, or ``fifo: true``) get ``MessageGroupId`` from config and a
``MessageDeduplicationId`` derived from the message's ``job_id``, so SQS itself drops retried duplicates
within its five-minute window.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import queue
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from modalkit_config import QueueConfig
from modalkit_queue._message import job_id_of
from modalkit_queue.errors import (
    BatchDeliveryError,
    DeliveryError,
    MessageTooLargeError,
    MissingExtraError,
    QueueNotFoundError,
)

if TYPE_CHECKING:
    from types_boto3_sqs.client import SQSClient
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

__all__ = ["SQS_MAX_BATCH", "SQSBackend", "SQSConsumer", "receive_sqs"]

SQS_MAX_BATCH = 10
"""Most entries SQS takes in one ``SendMessageBatch`` / ``ReceiveMessage`` call."""

_T = TypeVar("_T")
_NOT_FOUND_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
# MessageDeduplicationId: up to 128 characters, alphanumeric and punctuation.
_DEDUP_RE = re.compile(r"^[!-~]{1,128}$")


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise MissingExtraError("sqs", "boto3") from exc
    return boto3


def _make_client(
    region_name: str | None,
    endpoint_url: str | None,
    max_pool_connections: int,
    connect_timeout: float,
    read_timeout: float,
) -> SQSClient:
    boto3 = _boto3()
    from botocore.config import Config

    # botocore's own retries are off: ReliableSender retries with its own policy, and stacking the two
    # would turn a short outage into minutes of blocked threads.
    config = Config(
        max_pool_connections=max_pool_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1},
    )
    client: SQSClient = boto3.session.Session().client(
        "sqs", region_name=region_name, endpoint_url=endpoint_url, config=config
    )
    return client


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error")
        if isinstance(error, dict):
            code = error.get("Code")
            return str(code) if code is not None else None
    return None


class SQSBackend:
    """Sends results to Amazon SQS queues by name (thread-safe; one instance serves many queues).

    Args:
        region_name: AWS region; ``None`` uses the SDK's lookup (``AWS_REGION``, profile).
        endpoint_url: Custom endpoint (moto, LocalStack); ``None`` uses AWS (or ``AWS_ENDPOINT_URL``).
        create_missing: Create a queue that does not exist instead of failing.
        fifo: Treat every queue as FIFO; ``None`` decides per queue from a ``.fifo`` suffix.
        message_group_id: ``MessageGroupId`` for FIFO queues.
        max_message_bytes: Largest message body sent (SQS's default queue limit is 256 KiB; a queue can be
            configured up to 1 MiB). Larger messages fail at once with ``MessageTooLargeError``.
        max_workers: Threads running boto3 calls (and HTTP connections in the pool).
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for a reply.
        client: A ready boto3 SQS client to use instead of building one.

    Raises:
        MissingExtraError: boto3 is not installed.
    """

    def __init__(
        self,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        create_missing: bool = False,
        fifo: bool | None = None,
        message_group_id: str = "modalkit",
        max_message_bytes: int = 262_144,
        max_workers: int = 8,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        client: SQSClient | None = None,
    ) -> None:
        _boto3()  # fail now, at startup, rather than on the first result
        self.region_name = region_name
        self.endpoint_url = endpoint_url
        self.create_missing = create_missing
        self.fifo = fifo
        self.message_group_id = message_group_id
        self.max_message_bytes = max_message_bytes
        self._client = client
        self._client_args = (region_name, endpoint_url, max_workers, connect_timeout, read_timeout)
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}
        self._threads = _DaemonThreads(max_workers, "modalkit-sqs")

    @classmethod
    def from_config(cls, queue_config: QueueConfig) -> SQSBackend:
        """The backend for ``backend: sqs`` with ``queue_config.sqs`` settings."""
        sqs = queue_config.sqs
        return cls(
            region_name=sqs.region_name,
            endpoint_url=sqs.endpoint_url,
            create_missing=sqs.create_missing,
            fifo=sqs.fifo,
            message_group_id=sqs.message_group_id,
        )

    @property
    def client(self) -> SQSClient:
        """The boto3 client (built on first use, from a thread of its own session: sessions are not thread-safe)."""
        with self._lock:
            if self._client is None:
                self._client = _make_client(*self._client_args)
            return self._client

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        result: _T = await asyncio.wrap_future(self._threads.submit(functools.partial(fn, *args)))
        return result

    # -- blocking helpers, run on the executor ----------------------------------------------------------------

    def is_fifo(self, queue_name: str) -> bool:
        """Whether ``queue_name`` is sent to as a FIFO queue."""
        return self.fifo if self.fifo is not None else queue_name.endswith(".fifo")

    def queue_url(self, queue_name: str) -> str:
        """The queue's URL (cached; blocking). Creates the queue if ``create_missing`` is on.

        Raises:
            QueueNotFoundError: The queue does not exist and ``create_missing`` is off.
        """
        with self._lock:
            url = self._urls.get(queue_name)
        if url is not None:
            return url
        client = self.client
        try:
            url = client.get_queue_url(QueueName=queue_name)["QueueUrl"]
        except Exception as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                raise
            if not self.create_missing:
                raise QueueNotFoundError(
                    queue_name,
                    f"SQS queue {queue_name!r} does not exist"
                    + (f" at {self.endpoint_url}" if self.endpoint_url else "")
                    + "; create it, fix the queue name, or set app_settings.queue_config.sqs.create_missing: true",
                ) from exc
            if self.is_fifo(queue_name):
                url = client.create_queue(QueueName=queue_name, Attributes={"FifoQueue": "true"})["QueueUrl"]
            else:
                url = client.create_queue(QueueName=queue_name)["QueueUrl"]
        with self._lock:
            self._urls[queue_name] = url
        return url

    def _forget(self, queue_name: str) -> None:
        # The queue may have been deleted or recreated, or the endpoint restarted: look it up again next time.
        with self._lock:
            self._urls.pop(queue_name, None)

    def _dedup_id(self, message: str) -> str:
        job_id = job_id_of(message)
        if job_id is not None and _DEDUP_RE.match(job_id):
            return job_id
        return hashlib.sha256((job_id if job_id is not None else message).encode()).hexdigest()

    def _check_size(self, queue_name: str, message: str) -> int:
        size = len(message.encode("utf-8"))
        if size > self.max_message_bytes:
            raise MessageTooLargeError(queue_name, size, self.max_message_bytes)
        return size

    def _send_one(self, queue_name: str, message: str) -> None:
        self._check_size(queue_name, message)
        try:
            url = self.queue_url(queue_name)
            if self.is_fifo(queue_name):
                self.client.send_message(
                    QueueUrl=url,
                    MessageBody=message,
                    MessageGroupId=self.message_group_id,
                    MessageDeduplicationId=self._dedup_id(message),
                )
            else:
                self.client.send_message(QueueUrl=url, MessageBody=message)
        except DeliveryError:
            self._forget(queue_name)
            raise
        except Exception as exc:
            self._forget(queue_name)
            raise DeliveryError(queue_name, f"sending to SQS queue {queue_name!r} failed: {exc}") from exc

    def _send_many(self, queue_name: str, messages: Sequence[str]) -> None:
        failures: dict[int, BaseException] = {}
        chunks: list[list[int]] = []
        chunk: list[int] = []
        chunk_bytes = 0
        for index, message in enumerate(messages):
            try:
                size = self._check_size(queue_name, message)
            except MessageTooLargeError as exc:
                failures[index] = exc
                continue
            # A batch request is bounded by the same byte limit as one message.
            if chunk and (len(chunk) == SQS_MAX_BATCH or chunk_bytes + size > self.max_message_bytes):
                chunks.append(chunk)
                chunk, chunk_bytes = [], 0
            chunk.append(index)
            chunk_bytes += size
        if chunk:
            chunks.append(chunk)
        fifo = self.is_fifo(queue_name)
        for indices in chunks:
            try:
                url = self.queue_url(queue_name)
                entries: list[SendMessageBatchRequestEntryTypeDef] = []
                for index in indices:
                    entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(index), "MessageBody": messages[index]}
                    if fifo:
                        entry["MessageGroupId"] = self.message_group_id
                        entry["MessageDeduplicationId"] = self._dedup_id(messages[index])
                    entries.append(entry)
                reply = self.client.send_message_batch(QueueUrl=url, Entries=entries)
            except Exception as exc:
                self._forget(queue_name)
                if isinstance(exc, DeliveryError):
                    error = exc
                else:
                    error = DeliveryError(queue_name, f"sending a batch to SQS queue {queue_name!r} failed: {exc}")
                    error.__cause__ = exc
                for index in indices:
                    failures[index] = error
                continue
            for failed in reply.get("Failed", []):
                failures[int(failed["Id"])] = DeliveryError(
                    queue_name,
                    f"SQS rejected a message for {queue_name!r}: {failed.get('Code')}: {failed.get('Message', '')}",
                )
        if failures:
            raise BatchDeliveryError(queue_name, failures)

    # -- QueueBackend -----------------------------------------------------------------------------------------

    async def send(self, queue_name: str, message: str) -> None:
        """Send one message (on the backend's threads, never on the event loop)."""
        await self._run(self._send_one, queue_name, message)

    async def send_batch(self, queue_name: str, messages: Sequence[str]) -> None:
        """Send messages with ``SendMessageBatch``, ten (and at most ``max_message_bytes``) per request.

        Raises:
            BatchDeliveryError: Some messages failed (too large, rejected, or their request failed); the
                others were delivered.
        """
        if messages:
            await self._run(self._send_many, queue_name, list(messages))

    async def close(self) -> None:
        """Stop the backend's threads once their current call ends; does not wait for a call hung on the network
        (the sender's close budget decides how long a call may take, and it has given up on them by now)."""
        self._threads.shutdown()


class _DaemonThreads:
    """A fixed set of daemon threads running blocking boto3 calls.

    Not a ThreadPoolExecutor: the interpreter joins an executor's threads at exit, so one call hung on a frozen
    endpoint (connect + read timeouts, times botocore's retries) would hold a shutting-down server well past its
    drain budget after every result was already dead-lettered. Daemon threads end with the process.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    def submit(self, fn: Callable[[], _T]) -> Future[_T]:
        future: Future[_T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the SQS backend is closed")
            if not self._started:
                for index in range(self._size):
                    threading.Thread(target=self._work, name=f"{self._name}-{index}", daemon=True).start()
                self._started = True
        self._jobs.put((fn, future))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        if started:
            for _ in range(self._size):
                self._jobs.put(None)


class SQSConsumer:
    """Reads (and by default deletes) messages from one SQS queue: check what arrived without a boto3 loop.

    Blocking; use it from sync code, a test, or ``asyncio.to_thread``. Delivery is at-least-once, so drop
    duplicates by ``job_id`` (:func:`~modalkit_queue.job_id_of`).

    Args:
        queue_name: The queue to read.
        region_name: AWS region (``None``: the SDK's lookup).
        endpoint_url: Custom endpoint (``None``: AWS, or ``AWS_ENDPOINT_URL``).
        client: A ready boto3 SQS client instead.
    """

    def __init__(
        self,
        queue_name: str,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        client: SQSClient | None = None,
    ) -> None:
        self.queue_name = queue_name
        self.client: SQSClient = client or _make_client(region_name, endpoint_url, 2, 5.0, 30.0)
        self._url: str | None = None

    @property
    def queue_url(self) -> str:
        """The queue's URL (looked up once)."""
        if self._url is None:
            try:
                self._url = self.client.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
            except Exception as exc:
                if _error_code(exc) in _NOT_FOUND_CODES:
                    raise QueueNotFoundError(self.queue_name, f"SQS queue {self.queue_name!r} does not exist") from exc
                raise
        return self._url

    def receive(self, max_messages: int = SQS_MAX_BATCH, wait_seconds: int = 0, *, delete: bool = True) -> list[str]:
        """One ``ReceiveMessage`` call: up to ``max_messages`` (<= 10) bodies, waiting up to ``wait_seconds``."""
        reply = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(max_messages, SQS_MAX_BATCH)),
            WaitTimeSeconds=max(0, min(wait_seconds, 20)),
        )
        found = reply.get("Messages", [])
        if delete and found:
            self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(found)],
            )
        return [m["Body"] for m in found]

    def close(self) -> None:
        """Close the consumer's HTTP connections."""
        self.client.close()

    def __enter__(self) -> SQSConsumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def receive_all(self, max_messages: int = 1000, wait_seconds: int = 1, *, delete: bool = True) -> list[str]:
        """Read until ``max_messages`` are in hand or a receive waits ``wait_seconds`` and finds nothing."""
        bodies: list[str] = []
        while len(bodies) < max_messages:
            got = self.receive(min(SQS_MAX_BATCH, max_messages - len(bodies)), wait_seconds, delete=delete)
            if not got:
                break
            bodies.extend(got)
        return bodies


def receive_sqs(
    queue_name: str,
    *,
    max_messages: int = 1000,
    wait_seconds: int = 1,
    delete: bool = True,
    region_name: str | None = None,
    endpoint_url: str | None = None,
) -> list[str]:
    """Read up to ``max_messages`` bodies from an SQS queue (see :meth:`SQSConsumer.receive_all`)."""
    with SQSConsumer(queue_name, region_name=region_name, endpoint_url=endpoint_url) as consumer:
        return consumer.receive_all(max_messages, wait_seconds, delete=delete)
