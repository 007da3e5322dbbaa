"""Loading an app file: its config beside it, importing it, finding its service, and the reload worker's way back.

This is the one way in for ``modalkit-serve APP.py`` and ``modalkit serve APP.py``. modalkit plugs in only
how it finds a service in a Modal app file (a `Finder`); everything else is here.

The reload worker is a fresh process that uvicorn's reloader starts: it learns what to load from the
environment the parent sets (`reload_environment`), and `reload_factory` builds the app from it.
"""

from __future__ import annotations

import importlib
import importlib.util
import linecache
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from fastapi import FastAPI

from modalkit_config import ConfigError, ConfigFileNotFoundError, ConfigIssue
from modalkit_serve._logging import configure_logging
from modalkit_serve._spec import ServiceSpec, build_app
from modalkit_serve.errors import ServeError, ServiceSpecError

__all__ = [
    "APP_ENV",
    "LOG_LEVEL_ENV",
    "Finder",
    "find_spec",
    "load_app_file",
    "load_service",
    "log_banner",
    "reload_environment",
    "reload_factory",
    "use_config_beside",
]

APP_ENV = "MODALKIT_APP_FILE"
"""Environment variable naming the app file, for the process uvicorn's --reload starts."""
_APP_ENV_ALIASES = ("MODALKIT_SERVE_APP",)  # the name modalkit-serve used before; still read
SERVICE_ENV = "MODALKIT_APP_SERVICE"
FINDER_ENV = "MODALKIT_APP_FINDER"
LOG_LEVEL_ENV = "MODALKIT_SERVE_LOG_LEVEL"
LOG_FORMAT_ENV = "MODALKIT_SERVE_LOG_FORMAT"

Finder = Callable[[ModuleType, str | None], ServiceSpec]
"""How a service is found in an imported app file: ``finder(module, service_name) -> ServiceSpec``."""


def check_config_flag(config: str | None) -> None:
    """Refuse a ``--config`` naming a file that does not exist, in the flag's own words.

    The CLIs pass ``--config`` on through ``MODALKIT_CONFIG`` (`use_config_beside`), so the loader's own message
    would blame that variable.

    Raises:
        ConfigFileNotFoundError: a named file is missing, or is a folder.
    """
    for part in (config or "").split(","):
        name = part.strip()
        if name and not Path(name).is_file():
            problem = "is a directory, not a config file" if Path(name).is_dir() else "config file not found"
            raise ConfigFileNotFoundError([ConfigIssue(name, "", None, f"{problem} (named by --config)")])


def use_config_beside(app_file: str | os.PathLike[str], config: str | None = None) -> None:
    """Point ``MODALKIT_CONFIG`` at ``config``; else, when it is unset, at the ``modalkit.yaml`` beside the app.

    ``config`` may list overlays, comma-separated; each is resolved against the working directory now, so the
    reload worker and a ``ModalConfig()`` inside the app file read the same files.
    """
    if config:
        os.environ["MODALKIT_CONFIG"] = ",".join(str(Path(p.strip()).resolve()) for p in config.split(","))
        return
    if os.environ.get("MODALKIT_CONFIG"):
        return
    beside = Path(app_file).resolve().parent / "modalkit.yaml"
    if beside.is_file():
        os.environ["MODALKIT_CONFIG"] = str(beside)


def load_app_file(path: str | os.PathLike[str], *, module_name: str | None = None) -> ModuleType:
    """Import ``path`` as a module, with its folder first on ``sys.path`` (as Modal does in the container).

    Args:
        path: The app file (``app.py``).
        module_name: Name to register the module under; defaults to the file's stem, as Modal names it.

    Raises:
        ServiceSpecError: the file does not exist or is not a Python file. Errors raised while the file runs
            propagate unchanged, so the caller can report them (`load_service` does).
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise ServiceSpecError(f"{path}: no such file (give the path of your app file, e.g. app.py)")
    if file.suffix != ".py":
        raise ServiceSpecError(f"{path}: not a Python file (give the path of your app file, e.g. app.py)")
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = module_name or file.stem
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - only for exotic loaders
        raise ServiceSpecError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as `import app` would: pickling, dataclasses and Modal look classes up by module.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def find_spec(module: ModuleType, service: str | None = None) -> ServiceSpec:
    """modalkit-serve's own finder: a `ServiceSpec` attribute, or a ``modalkit_service()`` function returning one.

    ``service`` names the attribute; without it ``service`` wins if there are several, else the only one.
    """
    where = getattr(module, "__file__", None) or module.__name__
    found = {name: value for name, value in vars(module).items() if isinstance(value, ServiceSpec)}
    if service is not None:
        if service not in found:
            raise ServiceSpecError(f"{where}: no ServiceSpec named {service!r} (found: {', '.join(sorted(found))})")
        return found[service]
    if "service" in found:
        return found["service"]
    if len(found) == 1:
        return next(iter(found.values()))
    if len(found) > 1:
        raise ServiceSpecError(
            f"{where}: several ServiceSpec objects ({', '.join(sorted(found))}); name the one to serve `service`"
        )
    factory = getattr(module, "modalkit_service", None)
    if callable(factory):
        made = factory()
        if isinstance(made, ServiceSpec):
            return made
        raise ServiceSpecError(f"{where}: modalkit_service() returned {type(made).__name__}, not a ServiceSpec")
    hint = ""
    if any(type(value).__module__.split(".")[0] == "modal" for value in vars(module).values()):
        hint = "; it is a Modal app file: serve it with `modalkit serve` (pip install modalkit)"
    raise ServiceSpecError(
        f"{where}: defines no service. Add `service = ServiceSpec(YourPipeline)` "
        f"(from modalkit_serve import ServiceSpec) or a function `modalkit_service()` returning one{hint}"
    )


def load_service(
    path: str | os.PathLike[str],
    *,
    service: str | None = None,
    finder: Finder | None = None,
    user_errors: tuple[type[BaseException], ...] = (),
) -> ServiceSpec:
    """Import an app file by path and find its service.

    The file's folder goes on ``sys.path`` first, so it can import its neighbours (``from my_model import ...``).

    Args:
        path: The app file.
        service: Which service, when the file defines several (``--service``).
        finder: How to find it (default `find_spec`); modalkit passes one that also knows Modal app files.
        user_errors: Errors the file may raise while it runs whose message is already written for a person;
            they propagate unchanged (as `ServeError` and `ConfigError` do). Others become a `ServiceSpecError`
            naming the type, the message and the failing line of the user's own folder.

    Raises:
        ServiceSpecError: no such file, it fails to import, or it defines no service.
    """
    passthrough: tuple[type[BaseException], ...] = (ServeError, ConfigError, *user_errors)
    try:
        module = load_app_file(path)
    except passthrough:
        raise
    except Exception as exc:
        raise ServiceSpecError(f"{path}: importing it failed: {_describe(exc, path)}") from exc
    spec = (finder or find_spec)(module, service)
    spec.source = Path(path).resolve()
    spec.service_name = service
    if finder is not None and finder is not find_spec:
        spec.finder = f"{finder.__module__}:{finder.__qualname__}"
    return spec


RELOAD_URL_ENV = "MODALKIT_SERVE_RELOAD_URL"
"""The URL the reloading server listens on, for the banner each reload worker logs."""


def reload_environment(spec: ServiceSpec, log_level: str, log_format: str = "auto") -> dict[str, str]:
    """The environment the reload worker needs to load ``spec`` again (set over whatever is there)."""
    if spec.source is None:
        raise ServiceSpecError("reload needs the app file: serve it with `modalkit-serve APP.py --reload`")
    env = {APP_ENV: str(spec.source), LOG_LEVEL_ENV: log_level, LOG_FORMAT_ENV: log_format}
    if spec.service_name:
        env[SERVICE_ENV] = spec.service_name
    if spec.finder:
        env[FINDER_ENV] = spec.finder
    return env


def log_banner(spec: ServiceSpec, base_url: str) -> None:
    """One INFO record: the models served, the /docs and /metrics URLs, and the config files read."""
    settings = spec.resolve_settings()
    models = list(settings.model_settings.model_entries)
    files = [str(p) for p in spec.config_files]
    docs, metrics = f"{base_url}/docs", f"{base_url}/metrics"
    logging.getLogger("modalkit.serve").info(
        "models: %s | docs: %s | metrics: %s | config: %s",
        ", ".join(models),
        docs,
        metrics,
        ", ".join(files) or "none (settings given in the app file)",
        extra={"models": models, "docs_url": docs, "metrics_url": metrics, "config_files": files},
    )
    gpu = settings.app_settings.deployment_config.gpu
    if gpu:
        # Modal attaches the GPU; here the model sees whatever devices this machine gives the process.
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = f"CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "CUDA_VISIBLE_DEVICES is not set"
        logging.getLogger("modalkit.serve").warning(
            "deployment_config.gpu %r applies on Modal only; this local run attaches no GPU and the model sees this "
            "machine's devices (%s): set CUDA_VISIBLE_DEVICES to choose them",
            gpu,
            devices,
            extra={"gpu": gpu, "cuda_visible_devices": visible},
        )


def reload_factory() -> FastAPI:
    """The app factory uvicorn's reloader imports in each fresh worker process (``serve --reload``)."""
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "INFO"), log_format=os.environ.get(LOG_FORMAT_ENV, "auto"))
    path = next((os.environ[n] for n in (APP_ENV, *_APP_ENV_ALIASES) if os.environ.get(n)), None)
    if not path:
        raise ServiceSpecError(f"{APP_ENV} is not set; start the server with `modalkit serve APP.py --reload`")
    finder = _import_finder(os.environ[FINDER_ENV]) if os.environ.get(FINDER_ENV) else None
    spec = load_service(path, service=os.environ.get(SERVICE_ENV) or None, finder=finder)
    app = build_app(spec, freeze_gc=True)
    url = os.environ.get(RELOAD_URL_ENV)
    if url:  # each restart shows the banner again, with what this restart read
        log_banner(spec, url)
    return app


def _import_finder(reference: str) -> Finder:
    module_name, _, qualname = reference.partition(":")
    target: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ServiceSpecError(f"{FINDER_ENV}={reference!r} does not name a function")
    return target


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
