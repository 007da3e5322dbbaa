"""The shared server fixtures start real servers on loopback and can stop and restart them."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import boto3
import pytest

if TYPE_CHECKING:  # at run time another conftest module may stand under that name
    from conftest import MotoServer, RedisServer


def redis_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64)


def test_moto_server_serves_sqs_and_ssm_over_http(aws_env: MotoServer) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="fixture-check")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert [m["Body"] for m in got] == ["hello"]
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/k", Value="v", Type="SecureString")
    assert ssm.get_parameter(Name="/k", WithDecryption=True)["Parameter"]["Value"] == "v"


def test_aws_env_starts_each_test_with_empty_state(aws_env: MotoServer) -> None:
    assert boto3.client("sqs").list_queues().get("QueueUrls", []) == []


def test_redis_server_stops_and_starts_on_the_same_port(redis_server: RedisServer) -> None:
    assert redis_ping(redis_server.port) == b"+PONG\r\n"
    port, pid = redis_server.port, redis_server.pid
    redis_server.stop()
    with pytest.raises(ConnectionRefusedError):
        redis_ping(port)
    redis_server.start()
    assert redis_server.pid != pid
    assert redis_ping(port) == b"+PONG\r\n"
