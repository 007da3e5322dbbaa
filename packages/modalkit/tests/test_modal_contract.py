"""The modal behaviour modalkit's source relies on, pinned against the installed modal package.

modalkit uses one private modal API, in one guarded adapter (`_web._modal_cls_of_instance`; a test below scans
the source for any other). Where it leans on public behaviour that
modal documents only loosely, that behaviour is stated here, so a modal upgrade that changes it fails these
tests by name rather than breaking ``modalkit serve`` or ``create_web_endpoints`` somewhere downstream.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import modal

from modalkit import ModalService
from modalkit._serve import _is_web_function
from modalkit._service import service_class
from modalkit._web import _modal_cls_of_instance

from .conftest import FIXTURES, LoadApp

SOURCE = Path(__file__).resolve().parents[1] / "src" / "modalkit"

# Private names of modal objects that modalkit once used; none may come back.
PRIVATE = re.compile(r"\b_(get_user_cls|is_web_endpoint|get_class_service_function|user_cls|webhook_config)\b")


class _Plain:
    flag = 3


def test_a_local_modal_cls_answers_attribute_reads_from_the_class_it_wraps() -> None:
    app = modal.App("contract")
    wrapped: Any = app.cls()(type("Wrapped", (_Plain,), {"__annotations__": {"p": str}, "p": modal.parameter()}))
    assert isinstance(wrapped, modal.Cls)
    assert wrapped.flag == 3


def test_service_class_finds_the_modal_service_behind_an_app_cls(load_app: LoadApp) -> None:
    module = load_app("modal_translation_app.py", FIXTURES / "translation.yaml")
    assert isinstance(module.TranslationApp, modal.Cls)
    user_cls = service_class(module.TranslationApp)
    assert user_cls is not None
    assert issubclass(user_cls, ModalService)
    assert user_cls.__name__ == "TranslationApp"
    assert service_class(user_cls) is user_cls


def test_service_class_is_none_for_other_classes() -> None:
    app = modal.App("contract-other")
    other: Any = app.cls()(type("Other", (), {"__annotations__": {"p": str}, "p": modal.parameter()}))
    assert service_class(other) is None
    assert service_class(_Plain) is None


def _web_and_plain(app_name: str) -> tuple[Any, Any]:
    """A web function (``@modal.asgi_app``) and a plain one, registered on a fresh app."""
    app = modal.App(app_name)

    def web() -> None:
        return None

    def plain() -> int:
        return 1

    return app.function(serialized=True)(modal.asgi_app()(web)), app.function(serialized=True)(plain)


def test_function_info_tells_a_web_function_from_a_plain_one() -> None:
    web_fn, plain_fn = _web_and_plain("contract-web")
    assert web_fn.info().web_info is not None
    assert plain_fn.info().web_info is None


def test_a_web_function_is_recognised_inside_a_running_event_loop() -> None:
    # modal's blocking info() warns on a running loop (an error here); modalkit serve may load an app file from
    # async code, so the check runs info() off the loop.
    web_fn, plain_fn = _web_and_plain("contract-loop")

    async def inside() -> tuple[bool, bool]:
        return _is_web_function(web_fn), _is_web_function(plain_fn)

    assert asyncio.run(inside()) == (True, False)
    assert (_is_web_function(web_fn), _is_web_function(plain_fn)) == (True, False)


def test_the_modalkit_source_uses_no_private_modal_api() -> None:
    found = [
        f"{path.relative_to(SOURCE)}:{n}: {line.strip()}"
        for path in sorted(SOURCE.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert not found, found


def test_the_one_private_modal_access_finds_the_cls_behind_an_instance(load_app: LoadApp) -> None:
    # modal has no public way from an instance (`TranslationApp()`) to its Cls: _web._modal_cls_of_instance is
    # the one guarded adapter, pinned here so a modal upgrade that moves it fails by name.
    module = load_app("modal_translation_app.py", FIXTURES / "translation.yaml")
    assert _modal_cls_of_instance(module.TranslationApp()) is module.TranslationApp


def test_modal_internals_are_reached_only_through_the_one_adapter() -> None:
    uses = [
        (path.name, n)
        for path in SOURCE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "synchronizer" in line or "modal._utils" in line
    ]
    assert uses
    assert {name for name, _ in uses} == {"_web.py"}
    web = (SOURCE / "_web.py").read_text()
    adapter = web[web.index("def _modal_cls_of_instance") : web.index("def _user_class")]
    assert web.count("synchronizer") == adapter.count("synchronizer")
