"""What only modalkit-queue has at its boundary: missing extras name the exact pip command.

The boundaries every package shares are one parametrised test: tests/test_boundaries.py at the repository root.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None  # makes `import name` raise ImportError\n"


@pytest.mark.parametrize(
    ("backend", "blocked", "extra", "package"),
    [
        ("sqs", ["boto3"], "sqs", "boto3"),
        ("taskiq", ["taskiq"], "taskiq", "taskiq"),
    ],
)
def test_missing_extra_names_the_exact_pip_command(backend: str, blocked: list[str], extra: str, package: str) -> None:
    code = BLOCK.format(names=blocked) + (
        "from modalkit_config import QueueConfig\n"
        "from modalkit_queue import create_backend, MissingExtraError\n"
        "try:\n"
        f"    create_backend(QueueConfig(backend={backend!r}))\n"
        "except MissingExtraError as exc:\n"
        "    print(type(exc).__name__, isinstance(exc, ImportError), exc.extra, exc.package)\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, message = out.stdout.splitlines()
    assert first == f"MissingExtraError True {extra} {package}"
    assert f'pip install "modalkit-queue[{extra}]"' in message


def test_missing_taskiq_redis_is_reported_for_a_redis_broker_url_only() -> None:
    code = BLOCK.format(names=["taskiq_redis"]) + (
        "from modalkit_config import QueueConfig\n"
        "from modalkit_queue import create_backend, MissingExtraError\n"
        "create_backend(QueueConfig(backend='taskiq', broker_url='memory://'))\n"
        "try:\n"
        "    create_backend(QueueConfig(backend='taskiq', broker_url='redis://127.0.0.1:1/0'))\n"
        "except MissingExtraError as exc:\n"
        "    print(exc.package, exc.install)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'taskiq_redis pip install "modalkit-queue[taskiq]"'
