"""Every Python code block in docs/ is either included from a tested file or run here, so the docs cannot drift.

A block is one of:

- an include: its only lines are ``--8<-- "examples/..."`` (pymdownx.snippets); the file must exist and belong to
  an example with tests of its own (or be package source), so it is tested where it lives;
- not run: the line before the fence is ``<!-- not-run: why -->`` (it needs Modal credentials, a running server,
  ...); it must still compile;
- everything else runs as a script in a fresh interpreter with warnings as errors, in an empty temporary
  directory, and must exit 0.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PYTHON_LANGS = frozenset({"python", "py", "python3", "pycon"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
_SNIPPET = re.compile(r'^-{1,}8<-{1,}\s+"(?P<path>[^"]+)"\s*$')
_SNIPPET_FENCE = re.compile(r"^-{1,}8<-{1,}\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    page: str
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"

    @property
    def includes(self) -> list[str]:
        """The snippet paths when the block is only snippet includes, else [].

        Two forms: ``--8<-- "path"`` lines, or a block of paths between two ``--8<--`` lines. Prefer the block
        form in python fences: it is not valid Python, so ``ruff format`` leaves it alone (it rewrites the
        one-line form into ``--8 < --"path"``, which snippets no longer recognises).
        """
        lines = [line.strip() for line in self.code.splitlines() if line.strip()]
        if len(lines) >= 3 and _SNIPPET_FENCE.match(lines[0]) and _SNIPPET_FENCE.match(lines[-1]):
            paths = lines[1:-1]
            if all(not _SNIPPET_FENCE.match(p) and not p.startswith(";") for p in paths):
                return paths
        matches = [_SNIPPET.match(line) for line in lines]
        if lines and all(matches):
            return [m["path"] for m in matches if m]
        return []

    @property
    def kind(self) -> str:
        if self.includes:
            return "include"
        return "not-run" if self.not_run is not None else "run"


def extract_blocks(text: str, page: str = "<text>") -> list[Block]:
    """Every fenced block of a markdown text (fences may be indented, as in admonitions and tabs)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        info = opening["info"].strip()
        lang = info.split()[0].lstrip(".{").rstrip("}").lower() if info else ""
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = [line[indent:] if line[:indent].strip() == "" else line.lstrip() for line in lines[i + 1 : end]]
        previous = i - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        marker = _MARKER.match(lines[previous]) if previous >= 0 else None
        blocks.append(Block(page, i + 1, lang, "\n".join(body) + "\n", marker["reason"].strip() if marker else None))
        i = end + 1
    return blocks


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)


def _python_blocks() -> list[Block]:
    found: list[Block] = []
    for path in _pages():
        page = path.relative_to(DOCS).as_posix()
        found += [b for b in extract_blocks(path.read_text(encoding="utf-8"), page) if b.lang in PYTHON_LANGS]
    return found


BLOCKS = _python_blocks()


def _clean_env() -> dict[str, str]:
    # A block must not depend on the developer's config or AWS settings.
    return {k: v for k, v in os.environ.items() if not k.startswith(("MODALKIT_", "AWS_"))}


def _check_include(block: Block, path: str) -> None:
    target = (ROOT / path).resolve()
    assert target.is_file(), f"{block.where}: includes {path}, which does not exist"
    relative = target.relative_to(ROOT)
    top = relative.parts[0]
    assert top in ("examples", "packages"), f"{block.where}: include {path} from examples/ or packages/ only"
    if top == "examples":
        example = ROOT / relative.parts[0] / relative.parts[1]
        tests = list(example.rglob("test_*.py"))
        assert tests, f"{block.where}: {path} belongs to {example.name}, which has no tests, so nothing checks it"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_python_block(block: Block, tmp_path: Path) -> None:
    if block.kind == "include":
        for path in block.includes:
            _check_include(block, path)
        return
    if block.lang == "pycon":
        pytest.fail(f"{block.where}: write a plain python block (pycon prompts cannot be run)")
    try:
        compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        pytest.fail(f"{block.where}: does not compile: {exc}")
    if block.kind == "not-run":
        assert block.not_run, f"{block.where}: a not-run marker needs a reason: <!-- not-run: why -->"
        return
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)],  # a deprecation in a docs example is a bug
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{block.where}: the block exited with {proc.returncode}. Fix it, or if it cannot run standalone, put "
            f"<!-- not-run: why --> on the line before it.\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )


def test_every_marker_precedes_a_python_block() -> None:
    stray: list[str] = []
    for path in _pages():
        page = path.relative_to(DOCS).as_posix()
        marked = {b.line for b in extract_blocks(path.read_text(encoding="utf-8"), page) if b.not_run is not None}
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not _MARKER.match(line):
                continue
            following = number
            while following < len(lines) and not lines[following].strip():
                following += 1
            fence = _FENCE.match(lines[following]) if following < len(lines) else None
            lang = fence["info"].strip().split()[0].lower() if fence and fence["info"].strip() else ""
            if following + 1 not in marked or lang not in PYTHON_LANGS:
                stray.append(f"docs/{page}:{number}")
    assert not stray, f"not-run markers that are not right before a python block: {stray}"


def test_block_counts() -> None:
    counts = {kind: sum(b.kind == kind for b in BLOCKS) for kind in ("run", "include", "not-run")}
    print(f"python blocks in docs/: {len(BLOCKS)} ({counts})")
    assert counts["run"] > 0, "no python block in docs/ is executed"
    assert counts["include"] > 0, "no python block in docs/ is included from an example"


# The extractor itself: these would pass vacuously if it found nothing.
SAMPLE = """\
Text.

```python
print("run me")
```

<!-- not-run: needs Modal credentials -->

```python
import modal
```

!!! note
    ```py
    x = 1
    ```

```python
--8<-- "examples/sentiment/app.py"
```

```python
--8<--
examples/sentiment/app.py
examples/sentiment/modalkit.yaml
--8<--
```

```bash
echo no
```
"""


def test_extractor_finds_kinds_langs_and_indented_fences() -> None:
    blocks = extract_blocks(SAMPLE)
    assert [(b.lang, b.kind, b.line) for b in blocks] == [
        ("python", "run", 3),
        ("python", "not-run", 9),
        ("py", "run", 14),
        ("python", "include", 18),
        ("python", "include", 22),
        ("bash", "run", 29),
    ]
    assert blocks[1].not_run == "needs Modal credentials"
    assert blocks[2].code == "x = 1\n"
    assert blocks[3].includes == ["examples/sentiment/app.py"]
    assert blocks[4].includes == ["examples/sentiment/app.py", "examples/sentiment/modalkit.yaml"]


def test_a_failing_block_fails(tmp_path: Path) -> None:
    [block] = extract_blocks("```python\nraise SystemExit(3)\n```\n", "sample.md")
    with pytest.raises(pytest.fail.Exception, match="exited with 3"):
        test_python_block(block, tmp_path)
