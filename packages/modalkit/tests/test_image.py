"""The image plan's modalkit install steps, read from real installed metadata (PEP 610)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import modal
import pytest

from modalkit._image import (
    MODALKIT_DISTRIBUTIONS,
    REMOTE_SOURCE_ROOT,
    ImageStep,
    build_image,
    modalkit_install_steps,
    package_source,
    wheel_from_installed,
)

WORKSPACE_PACKAGES = Path(__file__).resolve().parents[2]


@pytest.fixture
def site_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path where tests install dist-info metadata, as pip would."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))


def _install_metadata(site: Path, name: str, version: str, direct_url: dict[str, object] | None) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


def test_workspace_packages_are_local_project_folders() -> None:
    for name in MODALKIT_DISTRIBUTIONS:
        source = package_source(name)
        assert source.kind == "directory", name
        assert Path(source.location) == WORKSPACE_PACKAGES / name
        assert (Path(source.location) / "pyproject.toml").is_file()


def test_workspace_sources_are_copied_then_installed_together() -> None:
    steps = modalkit_install_steps({"modalkit-queue": ["sqs"]}, pins=["modal==1.6.4"])
    copies = [s for s in steps if s.method == "add_local_dir"]
    assert [Path(s.args[0]).name for s in copies] == list(MODALKIT_DISTRIBUTIONS)
    assert all(s.kwargs["copy"] is True for s in copies)  # mounted layers would forbid the pip step after them
    assert all(s.args[1] == f"{REMOTE_SOURCE_ROOT}/{Path(s.args[0]).name}" for s in copies)
    [install] = [s for s in steps if s.method == "pip_install"]
    assert steps[-1] is install
    assert f"modalkit-queue[sqs] @ file://{REMOTE_SOURCE_ROOT}/modalkit-queue" in install.args
    assert f"modalkit-serve @ file://{REMOTE_SOURCE_ROOT}/modalkit-serve" in install.args
    assert "modal==1.6.4" in install.args


def _install_package(site: Path, name: str, version: str) -> None:
    """A distribution as pip leaves it after an index install: files, dist-info with WHEEL and RECORD, no
    direct_url.json, bytecode beside the source and a console script outside site-packages."""
    module = name.replace("-", "_")
    (site / module).mkdir()
    (site / module / "__init__.py").write_text(f"VALUE = {version!r}\n")
    (site / module / "__pycache__").mkdir()
    (site / module / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"stale bytecode")
    (site / module / "py.typed").write_text("")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    (info / "INSTALLER").write_text("pip\n")
    files = [
        f"{module}/__init__.py",
        f"{module}/__pycache__/__init__.cpython-311.pyc",
        f"{module}/py.typed",
        f"{info.name}/METADATA",
        f"{info.name}/WHEEL",
        f"{info.name}/INSTALLER",
        f"../../../bin/{module}",
        f"{info.name}/RECORD",
    ]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))


def test_index_install_ships_a_wheel_of_the_installed_files(site_dir: Path, tmp_path: Path) -> None:
    # The modalkit packages are on no index the container can reach (PyPI's `modalkit` is another project):
    # pinning `name==version` would fail the image build, so the installed files travel as a wheel.
    _install_package(site_dir, "mk-fake-index", "1.2.3")
    wheels = tmp_path / "wheels"
    copy, install = modalkit_install_steps(
        {"mk-fake-index": ["b", "a"]}, distributions=["mk-fake-index"], pins=["modal==1.6.4"], wheel_dir=wheels
    )
    wheel = wheels / "mk_fake_index-1.2.3-py3-none-any.whl"
    assert copy == ImageStep("add_local_file", (str(wheel), f"{REMOTE_SOURCE_ROOT}/{wheel.name}"), {"copy": True})
    assert install.args == (f"mk-fake-index[a,b] @ file://{REMOTE_SOURCE_ROOT}/{wheel.name}", "modal==1.6.4")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert names[-1] == "mk_fake_index-1.2.3.dist-info/RECORD"
    assert not [n for n in names if n.endswith((".pyc", "INSTALLER")) or n.startswith("..")]
    # The wheel is a real one: a fresh venv installs it offline and imports it.
    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        ["uv", "pip", "install", "-q", "--offline", "--no-deps", "--python", str(python), str(wheel)],
        check=True,
        timeout=120,
    )
    code = "import importlib.metadata as m, mk_fake_index as p; print(p.VALUE, m.version('mk-fake-index'))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == ["1.2.3", "1.2.3"]


def test_a_rebuilt_wheel_has_the_same_bytes_each_time(site_dir: Path, tmp_path: Path) -> None:
    _install_package(site_dir, "mk-fake-stable", "0.1.0")
    first = wheel_from_installed("mk-fake-stable", tmp_path / "a").read_bytes()
    second = wheel_from_installed("mk-fake-stable", tmp_path / "b").read_bytes()
    assert first == second  # so Modal's image cache is reused across deploys


def test_local_wheel_is_copied_and_installed(site_dir: Path, tmp_path: Path) -> None:
    wheel = tmp_path / "mk_fake_wheel-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    _install_metadata(site_dir, "mk-fake-wheel", "0.1.0", {"url": wheel.as_uri(), "archive_info": {}})
    copy, install = modalkit_install_steps(distributions=["mk-fake-wheel"])
    assert copy.method == "add_local_file"
    assert copy.args == (str(wheel), f"{REMOTE_SOURCE_ROOT}/{wheel.name}")
    assert install.args == (f"mk-fake-wheel @ file://{REMOTE_SOURCE_ROOT}/{wheel.name}",)


def test_vcs_install_reinstalls_the_same_commit(site_dir: Path) -> None:
    _install_metadata(
        site_dir,
        "mk-fake-vcs",
        "0.1.0",
        {"url": "https://example.invalid/mk.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}},
    )
    [install] = modalkit_install_steps(distributions=["mk-fake-vcs"])
    assert install.args == ("mk-fake-vcs @ git+https://example.invalid/mk.git@abc123",)


def test_the_plan_applies_to_the_real_modal_image() -> None:
    steps = [ImageStep("debian_slim", kwargs={"python_version": "3.11"}), *modalkit_install_steps()]
    image = build_image(steps)
    assert isinstance(image, modal.Image)


def test_a_step_with_a_wrong_argument_fails_in_modal() -> None:
    with pytest.raises(TypeError):
        build_image([ImageStep("debian_slim", kwargs={"python_versoin": "3.11"})])


def test_step_reads_like_the_call() -> None:
    assert str(ImageStep("env", ({"A": "1"},), {"x": 2})) == "env({'A': '1'}, x=2)"
