"""Test your service end to end: ``modalkit serve APP.py`` as a real process on a free loopback port.

Example::

    from modalkit.testing import serving

    def test_my_service(tmp_path):
        with serving("app.py", config="modalkit.yaml", cwd=tmp_path) as server:
            status, body = server.post("/predict_sync", {"text": "hi"})
            assert status == 200

``serving`` starts the command a user runs (as ``python -m modalkit serve``, so it works from any environment
that has modalkit), on port 0 in its own process group, waits until ``/ready`` answers 200 (the models are
loaded), and on exit stops it by its PID: SIGTERM, so accepted async jobs are delivered, then SIGKILL after a
grace period. The server's stdout and stderr (its JSON log) go to files in ``log_dir``. The start/wait/stop
logic is `modalkit_serve.testing.ServedProcess`; this module adds the ``modalkit`` command and a small JSON
client.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from modalkit_serve.testing import ServedProcess

__all__ = ["MODALKIT_SERVE", "ModalkitServer", "offline_app", "serving"]

MODALKIT_SERVE = (sys.executable, "-m", "modalkit", "serve")
"""The command the server runs; the app file and ``--host/--port/--port-file`` are appended."""

StrPath = str | os.PathLike[str]


class ModalkitServer(ServedProcess):
    """A ``modalkit serve`` process with a JSON client for its routes.

    Used as a context manager it starts the server, ready, and stops it by its PID on exit (``serving`` is this
    same class).

    Args:
        app: The app file (relative to ``cwd`` when relative).
        args: More ``modalkit serve`` arguments (``--service``, ``--log-level``, ...).
        config: Config file(s) for ``--config``; several are laid over each other in order.
        cwd: The server's working directory (default: this process's).
        env: Extra environment variables for the server.
        base_env: The environment the server starts from (default: this process's environment).
        log_dir: Where its stdout/stderr logs go (default: ``cwd`` if given, else a new temporary folder,
            kept so a failed test can be read).
        startup_timeout: Seconds to wait for the server to be ready.
        ready_path: The route that answers 200 once the server is ready (None: only wait for the port).
    """

    def __init__(
        self,
        app: StrPath,
        args: Sequence[str] = (),
        *,
        config: StrPath | Sequence[StrPath] | None = None,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
        log_dir: StrPath | None = None,
        startup_timeout: float = 60.0,
        ready_path: str | None = "/ready",
    ) -> None:
        if config is not None:
            files = [config] if isinstance(config, str | os.PathLike) else list(config)
            args = ["--config", ",".join(os.fspath(f) for f in files), *args]
        if log_dir is None:
            log_dir = cwd if cwd is not None else tempfile.mkdtemp(prefix="modalkit-serve-")
        super().__init__(
            app,
            args,
            log_dir=log_dir,
            env=env,
            base_env=base_env,
            cwd=cwd,
            command=MODALKIT_SERVE,
            startup_timeout=startup_timeout,
            ready_path=ready_path,
        )

    def get(self, path: str, *, headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> tuple[int, Any]:
        """``GET path``; returns the status and the decoded JSON body (error statuses too)."""
        return self._send(urllib.request.Request(self.url + path, headers=dict(headers or {})), timeout)  # noqa: S310 (loopback)

    def post(
        self, path: str, body: Any, *, headers: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> tuple[int, Any]:
        """``POST path`` with ``body`` as JSON; returns the status and the decoded JSON body (error statuses too)."""
        request = urllib.request.Request(  # noqa: S310 (loopback)
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", **(headers or {})},
            method="POST",
        )
        return self._send(request, timeout)

    @staticmethod
    def _send(request: urllib.request.Request, timeout: float) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())


serving = ModalkitServer
"""``with serving(APP, ...) as server``: the same object as `ModalkitServer` (a context manager), by its older name."""


@contextmanager
def offline_app(
    app_file: StrPath, *, config: StrPath | None = None, module_name: str | None = None
) -> Iterator[ModuleType]:
    """Import an app file as ``modal deploy`` would, for offline checks with the real modal package.

    ``MODALKIT_CONFIG`` names ``config`` (default: the ``modalkit.yaml`` beside the app file) and
    ``MODALKIT_APP_POSTFIX`` is unset while the file is imported and the block runs; both are restored after.
    Then ``app.MyService(...).process_request.local(...)`` and ``...info()`` work without Modal's cloud.
    """
    from modalkit import load_app_file

    path = Path(app_file)
    saved = {name: os.environ.get(name) for name in ("MODALKIT_CONFIG", "MODALKIT_APP_POSTFIX")}
    os.environ["MODALKIT_CONFIG"] = str(config if config is not None else path.parent / "modalkit.yaml")
    os.environ.pop("MODALKIT_APP_POSTFIX", None)
    try:
        yield load_app_file(path, module_name=module_name)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
