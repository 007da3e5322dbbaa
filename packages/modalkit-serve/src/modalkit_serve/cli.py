"""``modalkit-serve APP.py``: serve an app file on this machine.

Usage::

    modalkit-serve APP.py [--host HOST] [--port PORT] [--config FILE[,FILE...]] [--log-level LEVEL]
                          [--log-format auto|json|console] [--reload] [--port-file PATH]

``--config`` sets ``MODALKIT_CONFIG`` (overlays are comma-separated). Without it, and without
``MODALKIT_CONFIG`` in the environment, the ``modalkit.yaml`` next to APP.py is used when there is one
(else the one in the working directory).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from modalkit_config import ConfigError
from modalkit_serve._logging import LOG_FORMATS
from modalkit_serve._service import load_service, run
from modalkit_serve.errors import ServiceSpecError

__all__ = ["main", "use_config"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modalkit-serve",
        description="Serve a modalkit app file locally (no Modal account needed).",
    )
    parser.add_argument("app", help="the app file, e.g. app.py (defines `service = ServiceSpec(...)`)")
    parser.add_argument("--host", help="interface to listen on (default: server_config.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: server_config.port, 8000; 0 picks a free one)")
    parser.add_argument("--config", help="modalkit.yaml to use (sets MODALKIT_CONFIG; comma-separated overlays)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default: server_config.log_level)")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="auto",
        help="json, console (readable lines), or auto: console when stderr is a terminal, else json",
    )
    parser.add_argument("--reload", action="store_true", help="restart when files next to the app file change")
    parser.add_argument("--port-file", help="write the port to this file once the server accepts connections")
    return parser


def use_config(app_path: str | os.PathLike[str], config: str | None) -> None:
    """Point ``MODALKIT_CONFIG`` at ``config``, else at the app's own modalkit.yaml when none is set."""
    if config:
        os.environ["MODALKIT_CONFIG"] = config
        return
    if os.environ.get("MODALKIT_CONFIG"):
        return
    beside = Path(app_path).resolve().parent / "modalkit.yaml"
    if beside.is_file():
        os.environ["MODALKIT_CONFIG"] = str(beside)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a usage or configuration problem)."""
    args = _parser().parse_args(argv)
    if args.port is not None and not 0 <= args.port <= 65535:
        print(f"modalkit-serve: --port must be between 0 and 65535 (got {args.port})", file=sys.stderr)
        return 2
    use_config(args.app, args.config)
    try:
        spec = load_service(args.app)
        spec.resolve_settings()
        run(
            spec,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            reload=args.reload,
            port_file=args.port_file,
            log_format=args.log_format,
        )
    except (ServiceSpecError, ConfigError) as exc:
        print(f"modalkit-serve: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. an unknown log level
        print(f"modalkit-serve: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
