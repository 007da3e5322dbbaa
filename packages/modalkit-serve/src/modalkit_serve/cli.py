"""``modalkit-serve APP.py``: serve an app file on this machine.

Usage::

    modalkit-serve APP.py [--host HOST] [--port PORT] [--config FILE[,FILE...]] [--log-level LEVEL]
                          [--log-format auto|json|console] [--reload] [--service NAME] [--port-file PATH]
                          [--keep-running]

``--config`` sets ``MODALKIT_CONFIG`` (overlays are comma-separated). Without it, and without
``MODALKIT_CONFIG`` in the environment, the ``modalkit.yaml`` next to APP.py is used when there is one
(else the one in the working directory). ``modalkit serve`` takes the same arguments (see `add_serve_arguments`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modalkit_config import ConfigError
from modalkit_serve._service import add_serve_arguments, serve_app_file
from modalkit_serve.errors import ModelLoadError, ServiceSpecError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modalkit-serve",
        description="Serve a modalkit app file locally (no Modal account needed).",
    )
    add_serve_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a usage or configuration problem, 3 when a model failed to load)."""
    args = _parser().parse_args(argv)
    try:
        serve_app_file(args)
    except ModelLoadError as exc:
        print(f"modalkit-serve: {exc}", file=sys.stderr)
        return exc.exit_status
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
