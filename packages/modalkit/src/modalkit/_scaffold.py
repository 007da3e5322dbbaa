"""``modalkit init NAME``: a new project whose tests pass out of the box and that serves and deploys as is.

The project depends on modalkit the way this modalkit is installed: from the package index (a version range
around the installed version), or, when it runs from a local checkout, from that checkout's package folders
(``[tool.uv.sources]`` path entries), so a project created from a checkout works offline.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from modalkit._image import MODALKIT_DISTRIBUTIONS, package_source
from modalkit.errors import ScaffoldError

__all__ = ["NEXT_STEPS", "next_steps", "scaffold"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")

# What a new project's user runs first, in order: printed by `modalkit init` and written in its README, so the
# two can't drift. On a fresh machine the first `uv sync` needs the package index (an empty uv cache holds
# nothing to install from); after it, `uv run --offline ...` works with no network at all.
NEXT_STEPS: tuple[tuple[str, str], ...] = (
    ("uv sync", "once, online: resolves and installs the project into .venv"),
    ("uv run pytest", "the tests pass out of the box"),
    ("uv run modalkit serve app.py", "http://127.0.0.1:8000/docs on this machine, no Modal account"),
    ("uv run modalkit deploy app.py", "on Modal (after `modal token new`)"),
)


def next_steps(indent: str = "") -> str:
    """``NEXT_STEPS`` as aligned shell lines with their comments."""
    width = max(len(command) for command, _ in NEXT_STEPS) + 2
    return "\n".join(f"{indent}{command.ljust(width)}# {comment}" for command, comment in NEXT_STEPS)


def scaffold(target: Path, *, modalkit_path: str | None = None) -> list[Path]:
    """Create the project folder ``target`` (its name is the project name).

    Args:
        target: The folder to create; it must not exist, or be empty.
        modalkit_path: A folder holding the modalkit package folders (the workspace root or its ``packages/``)
            to depend on by path; default: the checkout this modalkit runs from, if any, else the index.

    Returns:
        The files written.

    Raises:
        ScaffoldError: a bad name, a non-empty target, or no modalkit packages under ``modalkit_path``.
    """
    name = target.name
    if not _NAME.match(name):
        raise ScaffoldError(
            f"{name!r} is not a usable project name: start with a letter; use letters, digits, '-' and '_'"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty; choose another name or remove it")
    sources = _sources(modalkit_path)
    module = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    camel = "".join(part.capitalize() for part in module.split("_"))
    values = {
        "name": name,
        "module": module,
        "Camel": camel,
        "dependencies": _dependencies(sources),
        "sources": _sources_table(sources),
        "modalkit_version": importlib.metadata.version("modalkit"),
        "next_steps": next_steps(),
    }
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        ".gitignore": _GITIGNORE,
        "modalkit.yaml": _CONFIG,
        f"{module}_pipeline.py": _PIPELINE,
        "app.py": _APP,
        "tests/conftest.py": _CONFTEST,
        "tests/test_pipeline.py": _TEST_PIPELINE,
        "tests/test_service.py": _TEST_SERVICE,
        "tests/test_modal_app.py": _TEST_MODAL_APP,
    }
    written = []
    for relative, template in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(template, values), encoding="utf-8")
        written.append(path)
    return written


def _render(template: str, values: dict[str, str]) -> str:
    # str.format would trip over the braces of TOML inline tables and Python dicts; only [[key]] is replaced.
    return re.sub(r"\[\[(\w+)\]\]", lambda m: values[m.group(1)], template)


def _sources(modalkit_path: str | None) -> dict[str, Path] | None:
    """Local project folder of each modalkit distribution, or None to depend on the package index."""
    if modalkit_path is None:
        source = package_source("modalkit")
        if source.kind != "directory":
            return None
        found = {name: Path(package_source(name).location) for name in MODALKIT_DISTRIBUTIONS}
        if all(package_source(name).kind == "directory" for name in MODALKIT_DISTRIBUTIONS):
            return found
        return None
    root = Path(modalkit_path).expanduser().resolve()
    found = {}
    for name in MODALKIT_DISTRIBUTIONS:
        for candidate in (root / name, root / "packages" / name):
            if (candidate / "pyproject.toml").is_file():
                found[name] = candidate
                break
        else:
            raise ScaffoldError(
                f"--modalkit-path {modalkit_path}: no {name}/pyproject.toml in it or in its packages/ folder; "
                "give the modalkit checkout (or its packages/ folder)"
            )
    return found


def _dependencies(sources: dict[str, Path] | None) -> str:
    if sources is None:
        major, minor, *_ = importlib.metadata.version("modalkit").split(".")
        return f'    "modalkit>={major}.{minor},<{major}.{int(minor) + 1}",'
    # Every modalkit package is a direct dependency so its path source applies (uv takes sources from the
    # project's own table, not from a dependency's).
    return "\n".join(f'    "{name}",' for name in sources)


def _sources_table(sources: dict[str, Path] | None) -> str:
    if sources is None:
        return ""
    lines = ["", "# modalkit from a local checkout (written by `modalkit init`); drop this table to use PyPI.", ""]
    lines.append("[tool.uv.sources]")
    lines += [f'{name} = {{ path = "{path.as_posix()}", editable = true }}' for name, path in sources.items()]
    return "\n".join(lines) + "\n"


_PYPROJECT = """\
[project]
name = "[[name]]"
version = "0.1.0"
description = "[[name]]: a model served with modalkit."
requires-python = ">=3.11"
dependencies = [
[[dependencies]]
]

[dependency-groups]
dev = ["pytest>=8", "pytest-asyncio>=0.24", "httpx>=0.27"]

[tool.uv]
package = false

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = ["-ra"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
[[sources]]"""

_README = """\
# [[name]]

A model served with [modalkit](https://pypi.org/project/modalkit/) ([[modalkit_version]]).

| file | what |
| --- | --- |
| `[[module]]_pipeline.py` | the model: input and output models, and the pipeline (preprocess, predict, postprocess) |
| `modalkit.yaml` | batching, serving limits, and how it runs on Modal |
| `app.py` | the service: the same file runs locally and on Modal |
| `tests/` | the pipeline, the HTTP service and the Modal class, all offline |

```bash
[[next_steps]]
curl -s localhost:8000/predict_sync -H 'content-type: application/json' -d '{"text": "what a great day"}'
```

The first `uv sync` needs the package index: a machine that has never run uv has nothing cached to install
from. Once it has run, nothing needs the network: `uv run --offline pytest` and `uv run --offline modalkit serve
app.py` work on a plane.

Replace the rule-based scorer in `[[module]]_pipeline.py` with your model; keep one output per input, in order.
"""

_GITIGNORE = """\
.venv/
__pycache__/
*.pyc
modalkit-dead-letters.jsonl
"""

_CONFIG = """\
# [[name]]'s configuration: `modalkit validate` checks it, `modalkit schema` prints every key.
app_settings:
  app_prefix: [[name]]
  batch_config:
    max_batch_size: 16   # up to 16 inputs per batch
    wait_ms: 10          # at most; an idle model starts at once
  deployment_config:     # on Modal
    cpu: 1.0
    memory: 1024
    handler_concurrency: 100
    mounts:              # local files the container needs besides app.py (paths relative to this file)
      - local_path: [[module]]_pipeline.py
        remote_path: /root/[[module]]_pipeline.py
        type: file
  server_config:         # `modalkit serve`
    host: 127.0.0.1
    port: 8000
  queue_config:
    backend: memory      # async results stay in the process; use sqs or taskiq in production

model_settings:
  model_entries:
    [[module]]:
      threshold: 0.05
"""

_PIPELINE = '''\
"""The [[name]] model: a small rule-based sentiment scorer. Replace it with your own model."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from modalkit import InferenceOutputModel, InferencePipeline, ItemError

POSITIVE = frozenset({"good", "great", "love", "excellent", "happy", "nice", "wonderful", "fun"})
NEGATIVE = frozenset({"bad", "awful", "hate", "terrible", "sad", "poor", "boring", "broken"})


class TextInput(BaseModel):
    """One text to score."""

    text: str = Field(min_length=1, max_length=5000)


class TextOutput(InferenceOutputModel):
    """The sentiment of one text."""

    label: Literal["positive", "negative", "neutral"]
    score: float


class [[Camel]]Pipeline(InferencePipeline[TextInput, TextOutput]):
    """Scores each text by its share of positive minus negative words.

    Model entry settings (modalkit.yaml): ``threshold``, how far from 0 a score must be to count.
    """

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, *args, **kwargs)
        # Load weights here: this runs once per model entry, when the service starts.
        self.threshold = float(kwargs.get("threshold", 0.05))

    def preprocess(self, input_list: list[TextInput]) -> dict[str, Any]:
        return {"words": [[w.strip(".,!?;:").lower() for w in item.text.split()] for item in input_list]}

    def predict(self, input_list: list[TextInput], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        scores = []
        for words in preprocessed_data["words"]:
            hits = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
            scores.append(hits / max(len(words), 1))
        return {"scores": scores}

    def postprocess(self, input_list: list[TextInput], raw_output: dict[str, Any]) -> list[TextOutput | ItemError]:
        results: list[TextOutput | ItemError] = []
        for score in raw_output["scores"]:
            label = "positive" if score > self.threshold else "negative" if score < -self.threshold else "neutral"
            results.append(TextOutput(label=label, score=round(score, 4)))
        return results
'''

_APP = '''\
"""[[name]]: one file, two runtimes.

    uv run modalkit serve app.py     # this machine: http://127.0.0.1:8000/docs
    uv run modalkit deploy app.py    # Modal (after `modal token new`)
"""

# No `from __future__ import annotations` here: Modal reads the modal.parameter types from the annotations.
import modal

from modalkit import ModalConfig, ModalService, create_web_endpoints
from [[module]]_pipeline import [[Camel]]Pipeline, TextInput, TextOutput

config = ModalConfig()  # modalkit.yaml (or the files MODALKIT_CONFIG names)
app = modal.App(config.app_name)


@config.cls(app)  # @app.cls(**config.get_app_cls_settings()), plus @modal.concurrent when configured
class [[Camel]]Service(ModalService):
    """Runs the pipeline in batches (max_batch_size and wait_ms from modalkit.yaml)."""

    inference_implementation = [[Camel]]Pipeline
    modal_utils = config
    model_name: str = modal.parameter(default="[[module]]")


@app.function(**config.get_handler_settings())
@config.handler_concurrent()
@modal.asgi_app(**config.get_asgi_app_settings())
def web_endpoints():  # noqa: ANN201
    """The HTTP API; it forwards requests to [[Camel]]Service."""
    return create_web_endpoints(app_cls=[[Camel]]Service, input_model=TextInput, output_model=TextOutput)
'''

_CONFTEST = '''\
"""Test set-up: the project's modules are importable, modalkit reads the project's modalkit.yaml, and the
`client` fixture talks HTTP to the service `modalkit serve app.py` runs, in this process."""

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MODALKIT_CONFIG", str(ROOT / "modalkit.yaml"))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    from modalkit import local_app

    app = local_app(ROOT / "app.py")
    async with app.router.lifespan_context(app):  # starts the models, and drains them at the end
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://[[name]].local") as c:
            for _ in range(600):  # the models load in the background; /ready says when they are up
                if (await c.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            yield c
'''

_TEST_PIPELINE = '''\
"""The pipeline alone: no server, no config file."""

from [[module]]_pipeline import [[Camel]]Pipeline

from modalkit import run_pipeline


def test_positive_text() -> None:
    [out] = run_pipeline([[Camel]]Pipeline, [{"text": "I love it, what a great day"}])
    assert out.label == "positive"


def test_negative_text() -> None:
    [out] = run_pipeline([[Camel]]Pipeline, [{"text": "awful and boring"}])
    assert out.label == "negative"


def test_one_output_per_input_in_order() -> None:
    outs = run_pipeline([[Camel]]Pipeline, [{"text": "great"}, {"text": "a table"}, {"text": "terrible"}])
    assert [o.label for o in outs] == ["positive", "neutral", "negative"]
'''

_TEST_SERVICE = '''\
"""The HTTP service `modalkit serve app.py` runs (see the `client` fixture in conftest.py)."""

import httpx


async def test_predict_sync(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict_sync", json={"text": "what a great day"})
    assert response.status_code == 200
    assert response.json()["label"] == "positive"


async def test_predict_batch_keeps_order(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict_batch", json=[{"text": "great"}, {"text": "awful"}])
    assert [r["label"] for r in response.json()] == ["positive", "negative"]


async def test_bad_input_is_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict_sync", json={"txt": "hello"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "text"]
'''

_TEST_MODAL_APP = '''\
"""The Modal class, run in this process by Modal's own `.local()`: no Modal account needed."""

from [[module]]_pipeline import TextInput

import app
from modalkit import SyncInputModel


def test_modal_class_runs_the_pipeline() -> None:
    service = app.[[Camel]]Service(model_name="[[module]]")
    [out] = service.process_request.local([SyncInputModel[TextInput](message=TextInput(text="so much fun"))])
    assert out.label == "positive"
'''
