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

import linecache
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from modalkit._appfile import load_app_file
from modalkit.errors import AppFileError, ModalkitError
from modalkit_config import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modalkit._web import WebEndpoints
    from modalkit_serve import ServiceSpec

__all__ = ["APP_ENV", "find_service", "load_app_service", "local_app", "reload_factory", "use_config_beside"]

#: Environment variable naming the app file, for the process uvicorn's --reload starts.
APP_ENV = "MODALKIT_APP_FILE"
_SERVICE_ENV = "MODALKIT_APP_SERVICE"


def use_config_beside(app_file: str | os.PathLike[str], config: str | None = None) -> None:
    """Point ``MODALKIT_CONFIG`` at ``config``; else, when it is unset, at the ``modalkit.yaml`` beside the app.

    Importing an app file runs ``ModalConfig()``, which reads ``MODALKIT_CONFIG`` or ./modalkit.yaml; this makes
    ``modalkit serve examples/sentiment/app.py`` read the example's own file from any working directory.
    """
    if config:
        os.environ["MODALKIT_CONFIG"] = ",".join(str(Path(p.strip()).resolve()) for p in config.split(","))
        return
    if os.environ.get("MODALKIT_CONFIG"):
        return
    beside = Path(app_file).resolve().parent / "modalkit.yaml"
    if beside.is_file():
        os.environ["MODALKIT_CONFIG"] = str(beside)


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
    module = _import(app_file)
    spec = find_service(module, service=service)
    spec.source = Path(app_file).resolve()
    return spec


def find_service(module: ModuleType, *, service: str | None = None) -> ServiceSpec:
    """The service an imported app file defines (see the module docstring for the order)."""
    from modalkit_serve import ServiceSpec

    where = getattr(module, "__file__", None) or module.__name__
    specs = {name: value for name, value in vars(module).items() if isinstance(value, ServiceSpec)}
    if specs:
        chosen: ServiceSpec = _choose(specs, service, "service", where)
        return chosen

    if "modal" not in sys.modules:
        # Nothing the file defines can be a Modal object, so skip the Modal forms (and the seconds `import
        # modal` takes).
        raise _no_service(where, service, [])
    from modalkit._service import check_service_class
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
        )
    if classes:
        user_cls = _choose(classes, service, "class", where)
        check_service_class(user_cls)
        return ServiceSpec(
            user_cls.inference_implementation,
            settings=user_cls.modal_utils.settings,
            config_files=user_cls.modal_utils.config_files,
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


def reload_factory() -> FastAPI:
    """The app factory uvicorn's reloader imports in each fresh worker process (``modalkit serve --reload``)."""
    from modalkit_serve import build_app, configure_logging

    configure_logging(os.environ.get("MODALKIT_SERVE_LOG_LEVEL", "INFO"))
    path = os.environ.get(APP_ENV)
    if not path:
        raise AppFileError(f"{APP_ENV} is not set; start the server with `modalkit serve APP.py --reload`")
    return build_app(load_app_service(path, service=os.environ.get(_SERVICE_ENV) or None))


def serve_with_reload(spec: ServiceSpec, host: str, port: int, log_level: str, service: str | None) -> None:
    """Run uvicorn with its reloader over `reload_factory`, watching the app file's folder."""
    import uvicorn

    assert spec.source is not None
    os.environ[APP_ENV] = str(spec.source)
    os.environ["MODALKIT_SERVE_LOG_LEVEL"] = log_level
    if service:
        os.environ[_SERVICE_ENV] = service
    uvicorn.run(
        "modalkit._serve:reload_factory",
        factory=True,
        host=host,
        port=port,
        reload=True,
        reload_dirs=[str(spec.source.parent)],
        log_config=None,
        access_log=False,
    )


# --- internals ---------------------------------------------------------------------------------------------


def _import(app_file: str | os.PathLike[str]) -> ModuleType:
    try:
        return load_app_file(Path(app_file))
    except (ModalkitError, ConfigError):
        raise
    except Exception as exc:
        raise AppFileError(f"{app_file}: importing it failed: {_describe(exc, app_file)}") from exc


def _describe(exc: BaseException, app_file: str | os.PathLike[str]) -> str:
    """``Type: message (at file:line: code)``, pointing at the deepest line of the user's own folder."""
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{message.split(' (', 1)[0]} (at {exc.filename}:{exc.lineno})"
    folder = Path(app_file).resolve().parent
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _inside(f.filename, folder)]
    if frames:
        frame = frames[-1]
        code = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
        return f"{message} (at {frame.filename}:{frame.lineno}: {code})"
    return message


def _inside(filename: str, folder: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(folder) and ".venv" not in Path(filename).parts
    except (OSError, ValueError):
        return False


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

    from modalkit._service import ModalService
    from modalkit._web import _user_class

    classes: dict[str, type[Any]] = {}
    for value in vars(module).values():
        if isinstance(value, modal.Cls):
            user_cls = _user_class(value)
            if issubclass(user_cls, ModalService):
                classes[user_cls.__name__] = user_cls
    return classes


def _captured_web_endpoints(module: ModuleType) -> list[WebEndpoints]:
    import modal

    from modalkit._web import capture_web_endpoints

    captured: list[WebEndpoints] = []
    for value in vars(module).values():
        # `_is_web_endpoint` rather than `info()`: info() is async under the hood and misbehaves when called
        # from a running event loop (an app built inside a test's event loop).
        if not isinstance(value, modal.Function) or not value._is_web_endpoint():
            continue
        with capture_web_endpoints() as found:
            try:
                value.local()
            except Exception:
                # A web function that does more than call create_web_endpoints: fall back to the classes.
                found.clear()
        captured.extend(found)
    return captured
