"""The container image as a plan of `modal.Image` calls, and how the modalkit packages get into it.

The plan is plain data (`ImageStep`), so it can be read, logged and tested; `build_image` applies it to the
real `modal.Image`, which checks every argument. Local files are added last: Modal refuses build steps after
a mounted (non-copied) layer.

How the modalkit packages reach the container (they must be importable there, at the versions used locally):

- installed from a package index (``pip install modalkit``): the installed files are packed back into a wheel
  (`wheel_from_installed`) that is copied into the image and installed there. The modalkit packages are not
  published on PyPI (PyPI's ``modalkit`` is an unrelated project), so pinning ``modalkit-serve==0.2.0`` would
  fail in the image build or, worse, install someone else's code;
- installed from a local checkout (``uv sync`` in this workspace, ``pip install -e .``; PEP 610's
  ``direct_url.json`` names the folder): the project folder is copied into the image and pip-installed from
  there, so the container runs the same code, even uncommitted, with its dependencies resolved by pip;
- installed from a local wheel or sdist: the archive is copied and installed;
- installed from a VCS or remote URL: pip installs the same URL (and commit).

All modalkit requirements go into one ``pip install`` so sibling packages resolve to each other rather than to
whatever an index holds under the same name.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import posixpath
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

__all__ = [
    "MODALKIT_DISTRIBUTIONS",
    "REMOTE_SOURCE_ROOT",
    "ImageStep",
    "PackageSource",
    "build_image",
    "default_wheel_dir",
    "modalkit_install_steps",
    "package_source",
    "wheel_from_installed",
]

#: Every distribution a modalkit container needs, dependencies first.
MODALKIT_DISTRIBUTIONS: tuple[str, ...] = (
    "modalkit-pipeline",
    "modalkit-config",
    "modalkit-queue",
    "modalkit-auth",
    "modalkit-serve",
    "modalkit",
)

#: Where local modalkit sources are copied inside the image before being pip-installed.
REMOTE_SOURCE_ROOT = "/opt/modalkit/src"

# What a project folder holds that the container never needs; keeps uploads small and the image cache stable.
_SOURCE_IGNORE: tuple[str, ...] = (
    "**/__pycache__",
    "**/*.pyc",
    ".venv",
    ".git",
    "tests",
    "build",
    "dist",
    ".*_cache",
)


@dataclass(frozen=True)
class ImageStep:
    """One call in the image plan: ``modal.Image.<method>(*args, **kwargs)``.

    The first step of a plan is a constructor (``debian_slim``, ``from_registry``) called on the class;
    the others are called on the image built so far.
    """

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.method}({', '.join(parts)})"


def build_image(steps: Sequence[ImageStep]) -> Any:
    """Apply an image plan to ``modal.Image`` and return the resulting (lazy, unbuilt) image."""
    import modal

    if not steps:
        raise ValueError("an image plan needs at least its base step")
    first, *rest = steps
    image = getattr(modal.Image, first.method)(*first.args, **first.kwargs)
    for step in rest:
        image = getattr(image, step.method)(*step.args, **step.kwargs)
    return image


@dataclass(frozen=True)
class PackageSource:
    """Where an installed distribution came from, as PEP 610 records it.

    Attributes:
        name: Distribution name (``modalkit-serve``).
        version: Installed version.
        kind: ``index`` (no direct URL recorded), ``directory`` (a local project folder, editable or not),
            ``archive`` (a local wheel or sdist) or ``url`` (a VCS or remote archive URL).
        location: The local path for ``directory``/``archive``, the pip URL for ``url``, empty for ``index``.
    """

    name: str
    version: str
    kind: Literal["index", "directory", "archive", "url"]
    location: str = ""


def package_source(name: str) -> PackageSource:
    """Find out how the distribution ``name`` was installed here.

    Raises:
        importlib.metadata.PackageNotFoundError: the distribution is not installed.
    """
    dist = importlib.metadata.distribution(name)
    raw = dist.read_text("direct_url.json")
    if not raw:
        return PackageSource(name, dist.version, "index")
    info = json.loads(raw)
    url = str(info.get("url", ""))
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
        kind: Literal["directory", "archive"] = "directory" if "dir_info" in info else "archive"
        return PackageSource(name, dist.version, kind, path)
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict):
        commit = vcs.get("commit_id") or vcs.get("requested_revision")
        url = f"{vcs.get('vcs', 'git')}+{url}" + (f"@{commit}" if commit else "")
    return PackageSource(name, dist.version, "url", url)


# Files of an installed distribution that the installer wrote, not the wheel: pip and uv regenerate them.
_INSTALLER_FILES = frozenset({"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"})
# A fixed timestamp: the same installed files give the same wheel bytes, so Modal's image cache holds.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def default_wheel_dir() -> Path:
    """Where rebuilt wheels are written: ``$XDG_CACHE_HOME/modalkit/wheels`` (``~/.cache/modalkit/wheels``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "modalkit" / "wheels"


def wheel_from_installed(name: str, out_dir: Path) -> Path:
    """Pack the installed distribution ``name`` back into a wheel in ``out_dir``, from its RECORD.

    The wheel holds the files the distribution installed under its site-packages folder (bytecode and the
    installer's own files left out; console scripts come back from ``entry_points.txt``), its ``WHEEL`` tags and
    a fresh ``RECORD``. The bytes depend only on the installed files, so repeated deploys reuse Modal's image cache.

    Raises:
        importlib.metadata.PackageNotFoundError: ``name`` is not installed.
        ValueError: the installation has no RECORD or WHEEL file to rebuild from.
    """
    dist = importlib.metadata.distribution(name)
    files = dist.files
    wheel_meta = dist.read_text("WHEEL")
    if not files or wheel_meta is None:
        raise ValueError(f"{name} {dist.version}: its installation has no RECORD or WHEEL file to rebuild a wheel from")
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:")]
    stem = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    wheel = Path(out_dir) / f"{stem}-{dist.version}-{tags[0] if tags else 'py3-none-any'}.whl"
    entries: dict[str, bytes] = {}
    record_name = ""
    for file in files:
        path = str(file).replace(os.sep, "/")
        parts = path.split("/")
        if path.startswith("../") or "__pycache__" in parts or path.endswith(".pyc"):
            continue  # outside site-packages (scripts), or bytecode
        if parts[0].endswith(".dist-info") and len(parts) == 2:
            if parts[1] == "RECORD":
                record_name = path
            if parts[1] in _INSTALLER_FILES:
                continue
        entries[path] = Path(str(dist.locate_file(file))).read_bytes()
    if not record_name:
        raise ValueError(f"{name} {dist.version}: its installation has no RECORD file to rebuild a wheel from")
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in sorted(entries.items())]
    record.append(f"{record_name},,")
    entries[record_name] = ("\n".join(record) + "\n").encode()
    wheel.parent.mkdir(parents=True, exist_ok=True)
    partial = wheel.with_name(wheel.name + f".{os.getpid()}.tmp")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(entries, key=lambda p: (p == record_name, p)):  # RECORD last, as wheels put it
            info = zipfile.ZipInfo(path, _ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[path])
    partial.replace(wheel)  # atomic: a concurrent deploy never reads half a wheel
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _requirement(source: PackageSource, extras: Iterable[str]) -> str:
    extra = f"[{','.join(sorted(set(extras)))}]" if extras else ""
    if source.kind == "index":
        raise AssertionError("index installs are shipped as rebuilt wheels")  # pragma: no cover
    if source.kind == "directory":
        return f"{source.name}{extra} @ file://{posixpath.join(REMOTE_SOURCE_ROOT, source.name)}"
    if source.kind == "archive":
        return f"{source.name}{extra} @ file://{posixpath.join(REMOTE_SOURCE_ROOT, Path(source.location).name)}"
    return f"{source.name}{extra} @ {source.location}"


def modalkit_install_steps(
    extras: Mapping[str, Sequence[str]] | None = None,
    *,
    distributions: Sequence[str] = MODALKIT_DISTRIBUTIONS,
    pins: Sequence[str] = (),
    wheel_dir: Path | None = None,
) -> list[ImageStep]:
    """The image steps that install the locally installed modalkit packages in the container.

    Args:
        extras: Extras to install per distribution, e.g. ``{"modalkit-queue": ["sqs"]}``.
        distributions: Which distributions to install (all of modalkit by default).
        pins: Further requirements for the same ``pip install`` (e.g. ``modal==1.6.4``).
        wheel_dir: Where wheels rebuilt from index installs are written (`default_wheel_dir` when ``None``).

    Returns:
        Copy steps for local sources (copied into the image, not mounted, so pip can run after them),
        then one ``pip_install`` step.
    """
    extras = extras or {}
    steps: list[ImageStep] = []
    requirements: list[str] = []
    for name in distributions:
        source = package_source(name)
        if source.kind == "directory":
            steps.append(
                ImageStep(
                    "add_local_dir",
                    (source.location, posixpath.join(REMOTE_SOURCE_ROOT, source.name)),
                    {"copy": True, "ignore": list(_SOURCE_IGNORE)},
                )
            )
        elif source.kind == "index":
            # Not on any index the container could reach: ship what is installed here, as a wheel.
            wheel = wheel_from_installed(name, wheel_dir or default_wheel_dir())
            source = PackageSource(name, source.version, "archive", str(wheel))
        if source.kind == "archive":
            remote = posixpath.join(REMOTE_SOURCE_ROOT, Path(source.location).name)
            steps.append(ImageStep("add_local_file", (source.location, remote), {"copy": True}))
        requirements.append(_requirement(source, extras.get(name, ())))
    steps.append(ImageStep("pip_install", (*requirements, *pins)))
    return steps
