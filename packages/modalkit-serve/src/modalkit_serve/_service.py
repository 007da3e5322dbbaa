"""Serving an app file with uvicorn (`run`), and the steps both CLIs share (`add_serve_arguments`, `serve_app_file`).

``modalkit-serve APP.py`` and ``modalkit serve APP.py`` differ only in how they find the service (modalkit passes
a finder that knows Modal app files) and how they print an error; the arguments and what they do are here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Literal

import uvicorn

from modalkit_queue import check_backend
from modalkit_serve._appfile import (
    RELOAD_URL_ENV,
    Finder,
    check_config_flag,
    load_service,
    log_banner,
    reload_environment,
    use_config_beside,
)
from modalkit_serve._http import edge_protocol
from modalkit_serve._journal import JobJournal
from modalkit_serve._logging import LOG_FORMATS, configure_logging, shutdown_logging
from modalkit_serve._runner import LocalRunner
from modalkit_serve._spec import ServiceSpec, build_app
from modalkit_serve.errors import ModelLoadError, ServiceSpecError

__all__ = ["add_serve_arguments", "run", "serve_app_file"]

logger = logging.getLogger("modalkit.serve")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``serve APP.py`` (both CLIs), read back by `serve_app_file`."""
    parser.add_argument("app", help="the app file, e.g. app.py")
    parser.add_argument("--host", help="interface to listen on (default: server_config.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: server_config.port, 8000; 0 picks a free one)")
    parser.add_argument(
        "--config", help="config file(s), comma-separated (sets MODALKIT_CONFIG; default: the modalkit.yaml beside APP)"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default: server_config.log_level)")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="auto",
        help="json, console (readable lines), or auto: console when stderr is a terminal, else json",
    )
    parser.add_argument("--reload", action="store_true", help="restart when files beside the app file change")
    parser.add_argument("--service", help="the service to serve when the app file defines several")
    parser.add_argument("--port-file", help="write the port here once the server accepts connections")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="only 1: one process owns the batcher, the job store and the metrics (see docs/serving.md)",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="when a model fails to load, keep serving the others (default: stop, exit status 3)",
    )


def serve_app_file(
    args: argparse.Namespace,
    *,
    finder: Finder | None = None,
    user_errors: tuple[type[BaseException], ...] = (),
    on_loading: Callable[[], None] | None = None,
) -> None:
    """Serve the app file named in ``args`` (from `add_serve_arguments`) until SIGINT/SIGTERM.

    Args:
        args: The parsed arguments.
        finder: How to find the service in the file (see `load_service`).
        user_errors: See `load_service`.
        on_loading: Called once the arguments are checked, before the file is imported.

    Raises:
        ServiceSpecError, ConfigError: a usage or configuration problem, with a message for a person.
    """
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ServiceSpecError(f"--port must be between 0 and 65535 (got {args.port})")
    if args.workers != 1:
        raise ServiceSpecError(
            f"--workers {args.workers}: the server runs one process, which owns the batcher, the async job store "
            "and the metrics (several would split batches and answer /jobs 404 for each other's jobs). For a "
            "CPU-bound model see docs/serving.md, 'More than one core'"
        )
    check_config_flag(args.config)
    use_config_beside(args.app, args.config)
    if on_loading is not None:
        on_loading()
    spec = load_service(args.app, service=args.service, finder=finder, user_errors=user_errors)
    spec.resolve_settings()
    run(
        spec,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        reload=args.reload,
        port_file=args.port_file,
        log_format=args.log_format,
        keep_running=args.keep_running,
    )


def check_journal(path: str | None, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> None:
    """Open and close the job journal once, so that a locked or damaged file is one clear error at start-up.

    Raises:
        JournalError: the file is in use by another server, damaged, or cannot be opened (nothing is changed).
    """
    if path is not None and path != ":memory:":
        JobJournal(path, synchronous=synchronous).close()


def run(
    spec: ServiceSpec,
    host: str | None = None,
    port: int | None = None,
    log_level: str | None = None,
    reload: bool = False,
    *,
    port_file: str | os.PathLike[str] | None = None,
    log_format: str = "auto",
    keep_running: bool = False,
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
        port_file: Where to write the bound port (not with ``reload``: the reloader's workers bind no socket
            of their own, so none of them could say when it accepts).
        log_format: ``json``, ``console`` or ``auto`` (console when stderr is a terminal); see
            `configure_logging`.
        keep_running: When a model fails to load, keep serving the others (``/ready`` stays 503 and the failed
            model answers 503). By default the server stops and `ModelLoadError` is raised, like uvicorn
            exiting when the app fails to import.

    Raises:
        ModelLoadError: a model failed to load and ``keep_running`` is False (after the server stopped).
    """
    if reload and port_file is not None:
        raise ServiceSpecError("--port-file does not work with --reload; give a --port and wait for it to answer")
    settings = spec.resolve_settings()
    # The app file is loaded, so its register_backend calls are done: an unknown name is a config error now,
    # not a traceback from the lifespan.
    check_backend(settings.app_settings.queue_config.backend)
    server_config = settings.app_settings.server_config
    check_journal(server_config.journal_path, server_config.journal_synchronous)
    host = host if host is not None else server_config.host
    port = port if port is not None else server_config.port
    level = (log_level or server_config.log_level).upper()
    configure_logging(level, log_format=log_format)
    try:
        if reload:
            _run_reload(spec, host, port, level, log_format)
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
            http=edge_protocol(server_config),  # header size, header-read time and connection bounds
            # Typed int, used as a float by uvicorn (loop.call_later).
            timeout_keep_alive=server_config.keep_alive_timeout_seconds,  # type: ignore[arg-type]
        )
        server = _Server(config, announce, getattr(app.state.runner, "begin_drain", None))
        failed: list[tuple[str, str]] = []
        runner = app.state.runner
        if not keep_running and isinstance(runner, LocalRunner):

            def stop(name: str, error: str) -> None:
                failed.append((name, error))
                server.should_exit = True

            runner.on_load_failure = stop
        server.run(sockets=[sock])
        if failed:
            name, error = failed[0]
            raise ModelLoadError(
                f"model {name} failed to load: {error}; the server stopped "
                "(--keep-running serves the other models without it)"
            )
        if not server.started:
            raise SystemExit(1)
    finally:
        shutdown_logging()


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
            self._listen_for_reload()
            self._announce()

    def _listen_for_reload(self) -> None:
        """SIGHUP reloads every model's artefacts (`LocalRunner.reload_artefacts`), instead of ending the process.

        The local trigger for what Modal does on ``volume_reload_interval_seconds``: swap a model file, then
        ``kill -HUP <pid>``. Only whoever may signal the process can trigger it, so it needs no credentials.
        """
        runner = getattr(getattr(self.config.app, "state", None), "runner", None)
        hangup = getattr(signal, "SIGHUP", None)
        if not isinstance(runner, LocalRunner) or hangup is None:
            return  # not a local runner, or no SIGHUP on this platform
        local: LocalRunner = runner
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        async def run_reload() -> None:
            logger.info("SIGHUP: reloading the artefacts of %d models", len(local.model_names))
            results = await local.reload_artefacts()
            failed = sorted(name for name, ok in results.items() if not ok)
            if failed:
                logger.error("SIGHUP: reload failed for %s; they keep their current artefacts", ", ".join(failed))
            else:
                logger.info("SIGHUP: reloaded %s", ", ".join(sorted(results)) or "no models")

        def on_hangup() -> None:
            task = loop.create_task(run_reload(), name="modalkit-reload-artefacts")
            tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(hangup, on_hangup)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # After a clean shutdown uvicorn re-raises the SIGTERM/SIGINT it caught, and the default handler ends
        # the process at once: flush the log (written by a background thread) before that happens.
        with super().capture_signals():
            yield
            shutdown_logging()


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


def _run_reload(spec: ServiceSpec, host: str, port: int, level: str, log_format: str) -> None:
    os.environ.update(reload_environment(spec, level, log_format))
    shown = f"[{host}]" if ":" in host else host
    os.environ[RELOAD_URL_ENV] = f"http://{shown}:{port}"
    assert spec.source is not None
    uvicorn.run(
        "modalkit_serve._appfile:reload_factory",
        factory=True,
        host=host,
        port=port,
        reload=True,
        reload_dirs=[str(spec.source.parent)],
        # The config beside the app file counts as much as its code (uvicorn watches only *.py by default).
        reload_includes=["*.py", "*.yaml", "*.yml"],
        log_config=None,
        access_log=False,
    )
