"""The ``modalkit-config`` command: validate files, print or refresh the JSON Schema.

Usage::

    modalkit-config validate modalkit.yaml [more.yaml ...]   # each file on its own
    modalkit-config validate --merge base.yaml prod.yaml      # the files as one overlaid configuration
    modalkit-config validate --no-env modalkit.yaml           # without MODALKIT_ variables and ./.env
    modalkit-config schema                                    # print the JSON Schema
    modalkit-config schema --write                            # refresh the schema shipped in the package
    modalkit-config schema --check                            # exit 1 when the shipped schema is stale

Exit status: 0 when everything is valid, 1 when a file has errors (or the schema is stale), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

from modalkit_config._loader import load_settings
from modalkit_config._schema import SCHEMA_FILE, json_schema, render_schema
from modalkit_config.errors import ConfigError, ModalkitDeprecationWarning

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, queue_backends: Collection[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    ``queue_backends``: the registered queue backend names, when the caller knows them (``modalkit validate``).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args.files, merge=args.merge, use_env=args.env, queue_backends=queue_backends)
    return _schema(args.path, write=args.write, check=args.check)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modalkit-config", description="Validate modalkit.yaml files.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{validate,schema}")
    validate = commands.add_parser("validate", help="check files against the schema, print every error")
    validate.add_argument("files", nargs="+", metavar="FILE", help="modalkit.yaml files")
    validate.add_argument("--merge", action="store_true", help="validate the files as overlays of one configuration")
    env = validate.add_mutually_exclusive_group()
    env.add_argument(
        "--no-env",
        dest="env",
        action="store_false",
        help="check the files alone, without the MODALKIT_ environment variables and ./.env",
    )
    env.add_argument(
        "--env", dest="env", action="store_true", help="apply MODALKIT_ variables and ./.env (the default)"
    )
    validate.set_defaults(env=True)
    schema = commands.add_parser("schema", help="print the JSON Schema of modalkit.yaml")
    mode = schema.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the schema file instead of printing it")
    mode.add_argument("--check", action="store_true", help="exit 1 when the schema file differs from the models")
    schema.add_argument(
        "--path", type=Path, default=SCHEMA_FILE, help="schema file for --write/--check (default: the shipped one)"
    )
    return parser


def _validate(files: list[str], *, merge: bool, use_env: bool, queue_backends: Collection[str] | None) -> int:
    groups = [files] if merge else [[file] for file in files]
    failed = False
    for group in groups:
        label = " + ".join(group)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ModalkitDeprecationWarning)
            try:
                if use_env:
                    load_settings(group, queue_backends=queue_backends)
                else:
                    load_settings(group, env={}, env_file=None, queue_backends=queue_backends)
            except ConfigError as exc:
                failed = True
                for issue in exc.issues:
                    print(issue)
                count = len(exc.issues)
                print(f"{label}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
            else:
                print(f"{label}: ok")
        for record in caught:
            _print_warning(record.message)
    return 1 if failed else 0


def _print_warning(message: Warning | str) -> None:
    issue = getattr(message, "issue", None)
    if issue is None:
        print(f"warning: {message}", file=sys.stderr)
        return
    where = issue.file if issue.line is None else f"{issue.file}:{issue.line}"
    print(f"{where}: warning: {issue.key_path} {issue.message}", file=sys.stderr)


def _schema(path: Path, *, write: bool, check: bool) -> int:
    if write:
        path.write_text(render_schema(), encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
        return 0
    if check:
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"{path}: cannot read the schema file ({exc})", file=sys.stderr)
            return 1
        if current != json_schema():
            print(f"{path} is out of date; run: modalkit-config schema --write", file=sys.stderr)
            return 1
        print(f"{path}: up to date", file=sys.stderr)
        return 0
    sys.stdout.write(render_schema())
    return 0


if __name__ == "__main__":
    sys.exit(main())
