"""The served app delivers async results to SQS (moto's server) and to taskiq (a real redis-server),
and consumer.py reads each job back once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from modalkit_queue import result_message

EXAMPLE = Path(__file__).resolve().parent.parent
APP = str(EXAMPLE / "app.py")
BROKER_ENV = "MODALKIT_APP_SETTINGS__QUEUE_CONFIG__BROKER_URL"

TICKETS = [
    ("I was charged twice, please refund me", 1),
    ("The API returns error 500", 2),
    ("   ...   ", 3),  # no words: its error goes to the failure queue
]


def send_tickets(server: Any) -> dict[int, str]:
    """POST each ticket to /predict_async; returns ticket number -> job id."""
    jobs: dict[int, str] = {}
    for text, number in TICKETS:
        status, body = server.post(
            "/predict_async",
            {
                "message": {"text": text},
                "success_queue": "ticket-routes",
                "failure_queue": "ticket-failures",
                "meta": {"ticket": number},
            },
        )
        assert status == 202, body
        jobs[number] = body["job_id"]
    return jobs


def check(results: list[Any], jobs: dict[int, str]) -> None:
    by_ticket = {r.body["meta"]["ticket"]: r for r in results}
    assert {n: r.job_id for n, r in by_ticket.items()} == jobs  # the ids the service answered with
    assert (by_ticket[1].queue, by_ticket[1].body["team"]) == ("ticket-routes", "billing")
    assert (by_ticket[2].queue, by_ticket[2].body["team"]) == ("ticket-routes", "technical")
    assert (by_ticket[3].queue, by_ticket[3].body["error"]) == (
        "ticket-failures",
        "the ticket has no words to route by",
    )
    assert by_ticket[3].body["original_message"]["message"] == {"text": "   ...   "}


@pytest.mark.e2e
def test_results_reach_sqs_and_the_consumer_prints_each_once(
    aws_env: Any, serving: Callable[..., Any], consumer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consumer.create_sqs_queues(region_name="us-east-1")
    config = f"{EXAMPLE / 'modalkit.yaml'},{EXAMPLE / 'sqs.yaml'}"

    with serving(APP, ["--config", config], cwd=tmp_path) as server:
        jobs = send_tickets(server)
    # Stopping the server drained it: every accepted job was delivered before the process exited.

    assert consumer.main(["sqs", "--region", "us-east-1", "--wait", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines[:-1]) == sorted(
        [
            f'ticket-routes  job={jobs[1]}  team=billing (refund, charged)  meta={{"ticket": 1}}',
            f'ticket-routes  job={jobs[2]}  team=technical (error, api, 500)  meta={{"ticket": 2}}',
            f'ticket-failures  job={jobs[3]}  error=the ticket has no words to route by  meta={{"ticket": 3}}',
        ]
    )
    assert lines[-1] == "3 results (0 duplicates dropped)"
    assert not (tmp_path / "ticket-dead-letters.jsonl").exists()


@pytest.mark.e2e
def test_results_reach_taskiq_on_redis(
    redis_server: Any, serving: Callable[..., Any], consumer: Any, tmp_path: Path
) -> None:
    with serving(APP, cwd=tmp_path, env={BROKER_ENV: redis_server.url}) as server:
        jobs = send_tickets(server)

    # Everything is there already (the drain delivered it), so reads need not wait for more.
    results = asyncio.run(consumer.read_taskiq(redis_server.url, wait_seconds=0.1))

    check(results, jobs)
    assert asyncio.run(consumer.read_taskiq(redis_server.url, wait_seconds=0.1)) == []  # read means acknowledged: gone


def test_sqs_results_read_back_with_the_helpers(aws_env: Any, consumer: Any) -> None:
    """read_sqs on messages shaped like the service's (the served path is the e2e test above)."""
    consumer.create_sqs_queues(region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="ticket-routes")["QueueUrl"]
    body = result_message({"status": "success", "team": "billing", "matched": ["refund"]}, "job-1", {"ticket": 1})
    for _ in range(2):  # at least once: the same result twice
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.close()

    results = consumer.read_sqs(region_name="us-east-1", wait_seconds=0)
    unique = consumer.Deduplicator()

    assert [r.job_id for r in unique(results)] == ["job-1"]
    assert unique.dropped == 1


def test_a_missing_queue_is_one_line_not_a_stack_trace(
    aws_env: Any, consumer: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert consumer.main(["sqs", "--region", "us-east-1", "--queue", "no-such-queue"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("consumer.py: error: QueueNotFoundError:")
    assert "no-such-queue" in err
    assert "Traceback" not in err
