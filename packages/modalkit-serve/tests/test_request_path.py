"""The request path written down in ``modalkit_serve.__doc__`` (and docs/serving.md) names code that exists.

A newcomer reads those ten lines first; each step names the object that does it, as ``module.Name`` or
``module.Name.method``. This fails when a step is renamed or moved and the page was not updated.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import modalkit_serve

DOC = Path(__file__).resolve().parents[3] / "docs" / "serving.md"
STEPS = ["request", "ASGI edge", "routes", "runner", "batcher", "worker", "pipeline", "sender"]


def _path_lines(text: str) -> list[str]:
    block = text.split("The request path", 1)[1]
    return [line for line in block.splitlines() if re.match(r"\s*\d+\. ", line)][:10]


def _resolves(reference: str) -> bool:
    parts = reference.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(target, attr):
                return False
            target = getattr(target, attr)
        return True
    return False


def test_the_request_path_names_each_step_in_order_and_every_object_it_names_exists() -> None:
    for text in (modalkit_serve.__doc__ or "", DOC.read_text()):
        lines = _path_lines(text)
        assert len(lines) == 10
        named = [re.match(r"\s*\d+\. ([^:]+):", line) for line in lines]
        steps = [m.group(1).strip() for m in named if m]
        assert [s for s in steps if s in STEPS] == STEPS, steps  # in the order the code runs
        references = [r for line in lines for r in re.findall(r"`((?:modalkit\w*)(?:\.\w+)+)`", line)]
        assert len(references) >= 10
        # a step done by a package that is not installed (modalkit's Modal runner, when modalkit-serve is tested
        # alone) is checked by the workspace run, where every package is
        checkable = [r for r in references if importlib.util.find_spec(r.split(".")[0]) is not None]
        assert len(checkable) >= 8
        missing = [r for r in checkable if not _resolves(r)]
        assert missing == [], missing
