"""What an app file declares (`ServiceSpec`), how the CLI finds it (`load_service`), and how it is served (`run`)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from modalkit_auth import build_authenticator
from modalkit_config import Settings, config_files, load_settings
from modalkit_pipeline import InferencePipeline, StreamingPipeline
from modalkit_queue import check_backend
from modalkit_serve._app import create_app
from modalkit_serve._entries import check_model_entries
from modalkit_serve._logging import configure_logging, shutdown_logging
from modalkit_serve._runner import LocalRunner
from modalkit_serve.errors import ServiceSpecError

__all__ = ["APP_ENV", "ServiceSpec", "build_app", "load_service", "run"]

logger = logging.getLogger("modalkit.serve")

APP_ENV = "MODALKIT_SERVE_APP"
"""Environment variable naming the app file, for the process uvicorn's --reload starts."""


@dataclass
class ServiceSpec:
    """A service: the pipeline, its settings and its I/O models. An app file defines one as a module attribute.

    Example (``app.py``)::

        from modalkit_serve import ServiceSpec
        from my_model import MyPipeline

        service = ServiceSpec(MyPipeline)   # settings: modalkit.yaml, read when the service starts

    Args:
        pipeline_cls: The `InferencePipeline` subclass.
        settings: The settings, or None to `load_settings()` when the service is built (``MODALKIT_CONFIG``,
            else ``modalkit.yaml``; the CLI points ``MODALKIT_CONFIG`` at the app's folder when it holds one).
        input_model: Defaults to the pipeline's declared input model.
        output_model: Defaults to the pipeline's declared output model.
    """

    pipeline_cls: type[InferencePipeline[Any, Any]]
    settings: Settings | None = None
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    source: Path | None = field(default=None, compare=False)
    """The app file this spec was loaded from (set by `load_service`; `run` needs it for ``reload=True``)."""
    config_files: list[Path] = field(default_factory=list, compare=False)
    """The config files the settings were read from (shown in the start-up banner); none for given settings."""

    def __post_init__(self) -> None:
        if not (isinstance(self.pipeline_cls, type) and issubclass(self.pipeline_cls, InferencePipeline)):
            raise ServiceSpecError(f"ServiceSpec needs an InferencePipeline subclass, got {self.pipeline_cls!r}")
        if self.input_model is None or self.output_model is None:
            declared_in, declared_out = self.pipeline_cls.io_models()
            self.input_model = self.input_model or declared_in
            self.output_model = self.output_model or declared_out

    def resolve_settings(self) -> Settings:
        """The settings given, else the ones `load_settings()` finds now, checked against the pipeline.

        Raises:
            ConfigError: the settings are invalid, or a model entry does not fit the arguments the pipeline
                declares (`InferencePipeline.entry_problems`).
        """
        if self.settings is None:
            self.settings = load_settings()
            self.config_files = [p.resolve() for p in config_files()]
        check_model_entries(self.pipeline_cls, self.settings)
        return self.settings


def build_app(spec: ServiceSpec, *, freeze_gc: bool = False) -> FastAPI:
    """The FastAPI app for a spec, served by a `LocalRunner`, with auth when the settings configure it.

    Args:
        spec: The service.
        freeze_gc: See `LocalRunner` (``run`` sets it: the process is a server).
    """
    settings = spec.resolve_settings()
    assert spec.input_model is not None
    assert spec.output_model is not None
    runner = LocalRunner(spec.pipeline_cls, settings, freeze_gc=freeze_gc)
    authenticator = build_authenticator(settings.app_settings)
    chunk_model = spec.pipeline_cls.chunk_model() if issubclass(spec.pipeline_cls, StreamingPipeline) else None
    return create_app(runner, spec.input_model, spec.output_model, settings, authenticator, chunk_model=chunk_model)


def load_service(path: str | os.PathLike[str]) -> ServiceSpec:
    """Import an app file by path and find its service.

    The file's folder goes on ``sys.path`` first, so it can import its neighbours (``from my_model import ...``).
    The service is a module attribute that is a `ServiceSpec` (``service`` wins if there are several), or a
    function ``modalkit_service()`` returning one.

    Raises:
        ServiceSpecError: no such file, it fails to import, or it defines no service.
    """
    app_path = Path(path).resolve()
    if not app_path.is_file():
        raise ServiceSpecError(f"{path}: no such file (give the path of your app file, e.g. app.py)")
    module = _import_path(app_path)
    spec = _find_spec(module, app_path)
    spec.source = app_path
    return spec


def _import_path(app_path: Path) -> ModuleType:
    folder = str(app_path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = app_path.stem
    import_spec = importlib.util.spec_from_file_location(name, app_path)
    if import_spec is None or import_spec.loader is None:
        raise ServiceSpecError(f"{app_path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(import_spec)
    # Registered under its own name, like `python app.py` would not but `import app` would: objects defined in
    # it (pipelines, models) then pickle and re-import by module and name.
    sys.modules[name] = module
    try:
        import_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ServiceSpecError(f"{app_path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    return module


def _find_spec(module: ModuleType, app_path: Path) -> ServiceSpec:
    found = {name: value for name, value in vars(module).items() if isinstance(value, ServiceSpec)}
    if "service" in found:
        return found["service"]
    if len(found) == 1:
        return next(iter(found.values()))
    if len(found) > 1:
        raise ServiceSpecError(
            f"{app_path}: several ServiceSpec objects ({', '.join(sorted(found))}); name the one to serve `service`"
        )
    factory = getattr(module, "modalkit_service", None)
    if callable(factory):
        made = factory()
        if isinstance(made, ServiceSpec):
            return made
        raise ServiceSpecError(f"{app_path}: modalkit_service() returned {type(made).__name__}, not a ServiceSpec")
    hint = ""
    if any(type(value).__module__.split(".")[0] == "modal" for value in vars(module).values()):
        hint = "; it is a Modal app file: serve it with `modalkit serve` (pip install modalkit)"
    raise ServiceSpecError(
        f"{app_path}: defines no service. Add `service = ServiceSpec(YourPipeline)` "
        f"(from modalkit_serve import ServiceSpec) or a function `modalkit_service()` returning one{hint}"
    )


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the address it really bound (port 0 picks a free one) once it accepts."""

    def __init__(
        self, config: uvicorn.Config, announce: Callable[[], None], on_exit: Callable[[], object] | None = None
    ) -> None:
        super().__init__(config)
        self._announce = announce
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # The drain budget starts at the signal, not when uvicorn has finished with open connections.
        if self._on_exit is not None:
            self._on_exit()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._announce()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # After a clean shutdown uvicorn re-raises the SIGTERM/SIGINT it caught, and the default handler ends
        # the process at once: flush the log (written by a background thread) before that happens.
        with super().capture_signals():
            yield
            shutdown_logging()


def run(
    spec: ServiceSpec,
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    reload: bool = False,
    *,
    port_file: str | os.PathLike[str] | None = None,
    log_format: str = "auto",
) -> None:
    """Serve a spec with uvicorn (one worker; uvloop and httptools when installed) until SIGINT/SIGTERM.

    Logs one line ``modalkit serving on http://HOST:PORT`` once it accepts connections (with the real port when
    ``port`` is 0), and writes the port to ``port_file`` if given. On shutdown it drains: in-flight requests
    and batches finish and accepted async jobs are delivered (``server_config.drain_timeout_seconds``).

    Args:
        spec: The service.
        host: Interface to bind (default ``server_config.host``).
        port: Port (default ``server_config.port``; 0 picks a free one).
        log_level: Log level (default ``server_config.log_level``).
        reload: Restart when files under the app's folder change (development; needs ``spec.source``).
        port_file: Where to write the bound port.
        log_format: ``json``, ``console`` or ``auto`` (console when stderr is a terminal); see
            `configure_logging`.
    """
    settings = spec.resolve_settings()
    # The app file is loaded, so its register_backend calls are done: an unknown name is a config error now,
    # not a traceback from the lifespan.
    check_backend(settings.app_settings.queue_config.backend)
    server_config = settings.app_settings.server_config
    host = host if host is not None else server_config.host
    port = port if port is not None else server_config.port
    level = (log_level or server_config.log_level).upper()
    configure_logging(level, log_format=log_format)
    try:
        if reload:
            _run_reload(spec, host, port, level)
            return
        app = build_app(spec, freeze_gc=True)
        sock = _bind(host, port)
        bound = int(sock.getsockname()[1])
        authenticator = getattr(app.state, "authenticator", None)
        if authenticator is not None:
            authenticator.warn_if_exposed(host)

        def announce() -> None:
            shown = f"[{host}]" if ":" in host else host
            logger.info("modalkit serving on http://%s:%d", shown, bound, extra={"host": host, "port": bound})
            log_banner(spec, f"http://{shown}:{bound}")
            if port_file is not None:
                _write_port(Path(port_file), bound)

        config = uvicorn.Config(
            app,
            log_config=None,  # ours: JSON lines (configure_logging)
            access_log=False,  # ours: one JSON record per request, with model and batch fields
            lifespan="on",
            # X-Forwarded-* rewriting costs every request and modalkit never uses the client address.
            proxy_headers=False,
            timeout_graceful_shutdown=int(server_config.drain_timeout_seconds) or None,
        )
        server = _Server(config, announce, getattr(app.state.runner, "begin_drain", None))
        server.run(sockets=[sock])
        if not server.started:
            raise SystemExit(1)
    finally:
        shutdown_logging()


def log_banner(spec: ServiceSpec, base_url: str) -> None:
    """One INFO record: the models served, the /docs and /metrics URLs, and the config files read."""
    settings = spec.resolve_settings()
    models = list(settings.model_settings.model_entries)
    files = [str(p) for p in spec.config_files]
    docs, metrics = f"{base_url}/docs", f"{base_url}/metrics"
    logger.info(
        "models: %s | docs: %s | metrics: %s | config: %s",
        ", ".join(models),
        docs,
        metrics,
        ", ".join(files) or "none (settings given in the app file)",
        extra={"models": models, "docs_url": docs, "metrics_url": metrics, "config_files": files},
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServiceSpecError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def _write_port(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)  # atomic: a reader never sees a half-written file


def _run_reload(spec: ServiceSpec, host: str, port: int, level: str) -> None:
    if spec.source is None:
        raise ServiceSpecError("reload needs the app file: serve it with `modalkit-serve APP.py --reload`")
    os.environ[APP_ENV] = str(spec.source)
    os.environ.setdefault("MODALKIT_SERVE_LOG_LEVEL", level)
    uvicorn.run(
        "modalkit_serve._service:reload_factory",
        factory=True,
        host=host,
        port=port,
        reload=True,
        reload_dirs=[str(spec.source.parent)],
        log_config=None,
        access_log=False,
    )


def reload_factory() -> FastAPI:
    """The app factory uvicorn's reloader imports in its worker process (see `run` with ``reload=True``)."""
    configure_logging(os.environ.get("MODALKIT_SERVE_LOG_LEVEL", "INFO"))
    path = os.environ.get(APP_ENV)
    if not path:
        raise ServiceSpecError(f"{APP_ENV} is not set; start the server with `modalkit-serve APP.py --reload`")
    return build_app(load_service(path), freeze_gc=True)
