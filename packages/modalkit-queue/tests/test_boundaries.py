"""Package boundaries: public names, version, dependency budget, lazy optional imports, missing extras."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires, version

import pytest

import modalkit_queue
from modalkit_queue import errors


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(modalkit_queue) if not name.startswith("_")}
    public -= {"annotations", "memory", "sqs", "taskiq"}  # submodules, reachable as modalkit_queue.<name>
    assert set(modalkit_queue.__all__) - {"__version__"} == public
    for name in modalkit_queue.__all__:
        assert hasattr(modalkit_queue, name)


def test_version_comes_from_the_installed_metadata() -> None:
    assert modalkit_queue.__version__ == version("modalkit-queue")


def test_depends_on_modalkit_config_only_with_extras_for_the_rest() -> None:
    reqs = requires("modalkit-queue") or []
    core = {re.split(r"[\s;\[<>=!~]", r, maxsplit=1)[0] for r in reqs if "extra ==" not in r}
    assert core == {"modalkit-config"}
    extras = {r.split("extra ==")[1].strip().strip("\"'") for r in reqs if "extra ==" in r}
    assert extras == {"sqs", "taskiq"}


def test_import_loads_no_optional_library() -> None:
    code = (
        "import sys, modalkit_queue, modalkit_queue.sqs, modalkit_queue.taskiq, modalkit_queue.memory\n"
        "banned = ['boto3', 'botocore', 'taskiq', 'taskiq_redis', 'redis', 'fastapi', 'modal']\n"
        "print(','.join(b for b in banned if b in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_error_tree_is_documented_and_rooted() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.QueueError)
        assert name in doc
    assert issubclass(errors.MissingExtraError, ImportError)
    assert issubclass(errors.QueueConfigError, ValueError)


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
