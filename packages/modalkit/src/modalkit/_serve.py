"""``modalkit serve APP.py``: serve the very file you deploy to Modal, on this machine, with no Modal account.

The app file is imported as Modal imports it (its folder first on ``sys.path``). The service to run is found in
this order:

1. a ``ServiceSpec`` (modalkit-serve's own app-file form; ``service`` wins if there are several);
2. the web function: it is called with `create_web_endpoints` in capture mode, which records the class and the
   I/O models it was given instead of building the Modal-backed app;
3. the ``@app.cls`` classes that subclass `ModalService` (their pipeline declares the I/O models).

The result is a ``ServiceSpec`` for serve's `LocalRunner`: the same pipeline, settings, batching, routes, auth
and limits, with the batches run in this process instead of a Modal container.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from modalkit.errors import AppFileError, ModalkitError
from modalkit_serve import ServiceSpec, use_config_beside
from modalkit_serve import load_app_file as _load_app_file
from modalkit_serve import load_service as _load_service
from modalkit_serve._appfile import find_spec
from modalkit_serve.errors import ServiceSpecError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modalkit._web import WebEndpoints

__all__ = ["find_service", "load_app_file", "load_app_service", "local_app"]


def load_app_file(path: str | os.PathLike[str], *, module_name: str | None = None) -> ModuleType:
    """Import ``path`` as a module, with its folder first on ``sys.path`` (as Modal does in the container).

    modalkit-serve's loader (`modalkit_serve.load_app_file`), raising modalkit's own error.

    Args:
        path: The app file (``app.py``).
        module_name: Name to register the module under; defaults to the file's stem, as Modal names it.

    Raises:
        AppFileError: the file does not exist or is not a Python file. Errors raised while the file runs
            (a bad configuration, a syntax error) propagate unchanged, so the caller can report them.
    """
    with _as_app_file_error():
        return _load_app_file(path, module_name=module_name)


def load_app_service(app_file: str | os.PathLike[str], *, service: str | None = None) -> ServiceSpec:
    """Import an app file and return the ``ServiceSpec`` that serves it locally.

    Args:
        app_file: The app file (``app.py``).
        service: The name of the class (or ServiceSpec attribute) to serve when the file defines several.

    Raises:
        AppFileError: the file is missing, fails to import (the message names the line), or defines no service.
        ConfigError: the configuration it reads is invalid.
        ServiceDefinitionError: its ModalService subclass is incomplete.
    """
    with _as_app_file_error():
        return _load_service(app_file, service=service, finder=find_service, user_errors=(ModalkitError,))


def find_service(module: ModuleType, service: str | None = None) -> ServiceSpec:
    """The service an imported app file defines (see the module docstring for the order).

    The finder modalkit plugs into modalkit-serve's `load_service`.
    """
    where = getattr(module, "__file__", None) or module.__name__
    if any(isinstance(value, ServiceSpec) for value in vars(module).values()):
        return find_spec(module, service)

    if "modal" not in sys.modules:
        # Nothing the file defines can be a Modal object, so skip the Modal forms (and the seconds `import
        # modal` takes).
        raise _no_service(where, service, [])
    from modalkit._service import check_service_class, queue_backend_of
    from modalkit._web import _user_class

    classes = _service_classes(module)
    web = _captured_web_endpoints(module)
    available = sorted(set(classes) | {_user_class(w.app_cls).__name__ for w in web})
    if service is not None:
        web = [w for w in web if _user_class(w.app_cls).__name__ == service]
        classes = {name: cls for name, cls in classes.items() if name == service}
    if web:
        targets = {_user_class(w.app_cls).__name__ for w in web}
        if len(targets) > 1:
            raise AppFileError(
                f"{where}: its web functions serve several classes ({', '.join(sorted(targets))}); "
                "choose one with --service NAME"
            )
        endpoint = web[0]
        user_cls = _user_class(endpoint.app_cls)
        check_service_class(user_cls)
        return ServiceSpec(
            user_cls.inference_implementation,
            settings=user_cls.modal_utils.settings,
            input_model=endpoint.input_model,
            output_model=endpoint.output_model,
            config_files=user_cls.modal_utils.config_files,
            queue_backend=queue_backend_of(user_cls),
        )
    if classes:
        user_cls = _choose(classes, service, "class", where)
        check_service_class(user_cls)
        return ServiceSpec(
            user_cls.inference_implementation,
            settings=user_cls.modal_utils.settings,
            config_files=user_cls.modal_utils.config_files,
            queue_backend=queue_backend_of(user_cls),
        )
    raise _no_service(where, service, available)


def _no_service(where: str, service: str | None, available: list[str]) -> AppFileError:
    if service is not None:
        return AppFileError(
            f"{where}: no ModalService class named {service!r} (found: {', '.join(available) or 'none'})"
        )
    return AppFileError(
        f"{where}: defines no modalkit service. Define an `@app.cls(...)` class that subclasses "
        "modalkit.ModalService (see `modalkit init`), or `service = ServiceSpec(YourPipeline)`"
    )


def local_app(app_file: str | os.PathLike[str], *, config: str | None = None, service: str | None = None) -> FastAPI:
    """The FastAPI app ``modalkit serve APP.py`` serves, for tests (e.g. with ``fastapi.testclient.TestClient``).

    Args:
        app_file: The app file.
        config: Configuration file(s), comma-separated; default: ``MODALKIT_CONFIG``, else the modalkit.yaml
            beside the app file.
        service: Which service, when the file defines several.
    """
    from modalkit_serve import build_app

    use_config_beside(app_file, config)
    return build_app(load_app_service(app_file, service=service))


# --- internals ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _as_app_file_error() -> Iterator[None]:
    try:
        yield
    except AppFileError:
        raise
    except ServiceSpecError as exc:
        raise AppFileError(str(exc)) from exc


def _choose(found: dict[str, Any], wanted: str | None, what: str, where: str) -> Any:
    if wanted is not None:
        if wanted not in found:
            raise AppFileError(f"{where}: no {what} named {wanted!r} (found: {', '.join(sorted(found))})")
        return found[wanted]
    if "service" in found:
        return found["service"]
    if len(found) == 1:
        return next(iter(found.values()))
    raise AppFileError(f"{where}: defines several ({', '.join(sorted(found))}); choose one with --service NAME")


def _service_classes(module: ModuleType) -> dict[str, type[Any]]:
    import modal

    from modalkit._service import service_class

    classes: dict[str, type[Any]] = {}
    for value in vars(module).values():
        if isinstance(value, modal.Cls):
            user_cls = service_class(value)
            if user_cls is not None:
                classes[user_cls.__name__] = user_cls
    return classes


def _captured_web_endpoints(module: ModuleType) -> list[WebEndpoints]:
    import modal

    from modalkit._web import capture_web_endpoints

    captured: list[WebEndpoints] = []
    for value in vars(module).values():
        if not isinstance(value, modal.Function) or not _is_web_function(value):
            continue
        with capture_web_endpoints() as found:
            try:
                value.local()
            except Exception:
                # A web function that does more than call create_web_endpoints: fall back to the classes.
                found.clear()
        captured.extend(found)
    return captured


def _is_web_function(function: Any) -> bool:
    """Whether a local ``modal.Function`` serves HTTP (``@modal.asgi_app`` and the like), by its public ``info()``.

    ``info()`` is modal's blocking interface, which warns when called on a running event loop (an app file loaded
    from async code): there it runs on a thread of its own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function.info().web_info is not None
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return bool(pool.submit(lambda: function.info().web_info is not None).result())
