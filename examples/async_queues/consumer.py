"""Read the ticket router's results from SQS or from taskiq (Redis streams), each job once.

    uv run python examples/async_queues/consumer.py taskiq --broker-url redis://127.0.0.1:6379/0
    uv run python examples/async_queues/consumer.py sqs --region us-east-1 [--create]

Delivery is at least once: a result whose acknowledgement was lost is sent again, so the same ``job_id`` can
arrive twice. The consumer keeps the first copy and drops the rest (``modalkit_queue.job_id_of``). Reading
takes the messages off the queue (SQS: deleted; Redis: acknowledged in the ``taskiq`` consumer group).

In production a taskiq worker usually consumes instead of this script: see ``consumer_broker`` in
modalkit-queue's README (``taskiq worker my_consumer:broker``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modalkit_queue import SQSConsumer, TaskiqConsumer, job_id_of

SUCCESS_QUEUE = "ticket-routes"
FAILURE_QUEUE = "ticket-failures"
DEAD_LETTER_QUEUE = "ticket-dead-letters"
QUEUES = (SUCCESS_QUEUE, FAILURE_QUEUE)


@dataclass(frozen=True)
class Result:
    """One message read from a queue."""

    queue: str
    job_id: str
    body: dict[str, Any] = field(hash=False)


@dataclass
class Deduplicator:
    """Keeps the first copy of each job; remembers the ids it has seen (a real consumer would persist them)."""

    seen: set[str] = field(default_factory=set)
    dropped: int = 0

    def __call__(self, results: Iterable[Result]) -> list[Result]:
        fresh: list[Result] = []
        for result in results:
            if result.job_id in self.seen:
                self.dropped += 1
                continue
            self.seen.add(result.job_id)
            fresh.append(result)
        return fresh


def _parse(queue: str, body: str) -> Result:
    job_id = job_id_of(body)
    if job_id is None:
        raise ValueError(f"{queue}: a message without a job_id is not a modalkit result: {body[:200]!r}")
    return Result(queue, job_id, json.loads(body))


def read_sqs(
    queues: Sequence[str] = QUEUES,
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    wait_seconds: int = 1,
) -> list[Result]:
    """Everything waiting on the SQS queues (each read ends after a receive that waited and found nothing)."""
    results: list[Result] = []
    for queue in queues:
        with SQSConsumer(queue, region_name=region_name, endpoint_url=endpoint_url) as consumer:
            results.extend(_parse(queue, body) for body in consumer.receive_all(wait_seconds=wait_seconds))
    return results


async def read_taskiq(broker_url: str, queues: Sequence[str] = QUEUES, *, wait_seconds: float = 1.0) -> list[Result]:
    """Everything waiting on the queues' Redis streams, read in the consumer group taskiq workers use."""
    results: list[Result] = []
    for queue in queues:
        async with TaskiqConsumer(broker_url, queue) as consumer:
            results.extend(_parse(queue, body) for body in await consumer.receive_all(wait_seconds=wait_seconds))
    return results


def create_sqs_queues(
    queues: Sequence[str] = (*QUEUES, DEAD_LETTER_QUEUE),
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
) -> list[str]:
    """Create the queues (an existing queue is left as it is); returns their URLs."""
    import boto3

    client = boto3.client("sqs", region_name=region_name, endpoint_url=endpoint_url)
    try:
        return [client.create_queue(QueueName=name)["QueueUrl"] for name in queues]
    finally:
        client.close()


def describe(result: Result) -> str:
    """One line per result, for people."""
    body = result.body
    meta = json.dumps(body.get("meta") or {}, sort_keys=True)
    if body.get("status") == "success":
        because = f" ({', '.join(body['matched'])})" if body.get("matched") else ""
        return f"{result.queue}  job={result.job_id}  team={body['team']}{because}  meta={meta}"
    return f"{result.queue}  job={result.job_id}  error={body.get('error')}  meta={meta}"


def main(argv: Sequence[str] | None = None) -> int:
    """Print each result once; returns the exit status."""
    parser = argparse.ArgumentParser(prog="consumer.py", description="Read the ticket router's results.")
    backends = parser.add_subparsers(dest="backend", required=True)
    sqs = backends.add_parser("sqs", help="read from Amazon SQS (AWS_ENDPOINT_URL for moto or LocalStack)")
    sqs.add_argument("--region", default=None, help="AWS region (default: the SDK's lookup)")
    sqs.add_argument("--endpoint-url", default=None, help="custom SQS endpoint")
    sqs.add_argument("--create", action="store_true", help="create the queues, then exit")
    taskiq = backends.add_parser("taskiq", help="read from taskiq's Redis streams")
    taskiq.add_argument("--broker-url", default="redis://127.0.0.1:6379/0", help="the service's broker_url")
    for sub in (sqs, taskiq):
        sub.add_argument("--queue", action="append", help=f"a queue to read (default: {', '.join(QUEUES)})")
        sub.add_argument("--wait", type=int, default=1, help="seconds to wait for a message before stopping")
    args = parser.parse_args(argv)
    queues = args.queue or list(QUEUES)

    if args.backend == "sqs" and args.create:
        for url in create_sqs_queues(region_name=args.region, endpoint_url=args.endpoint_url):
            print(f"created {url}")
        return 0
    try:
        if args.backend == "sqs":
            results = read_sqs(queues, region_name=args.region, endpoint_url=args.endpoint_url, wait_seconds=args.wait)
        else:
            results = asyncio.run(read_taskiq(args.broker_url, queues, wait_seconds=args.wait))
    except Exception as exc:  # a missing queue, no Redis, bad credentials: one line, no stack trace
        print(f"consumer.py: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    unique = Deduplicator()
    fresh = unique(results)
    for result in fresh:
        print(describe(result))
    print(f"{len(fresh)} results ({unique.dropped} duplicates dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
