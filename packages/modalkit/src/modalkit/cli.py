"""The ``modalkit`` command.

Usage::

    modalkit serve APP.py [--host H] [--port P] [--config FILE] [--log-level L] [--log-format F] [--reload]
                          [--service NAME] [--port-file PATH]
    modalkit deploy APP.py [--config FILE] [--postfix=-prod] [--dry-run] [-- MODAL_DEPLOY_ARGS...]
    modalkit validate [--no-env] [FILE...]   # default: MODALKIT_CONFIG's files, merged, else modalkit.yaml
    modalkit schema                      # the JSON Schema of modalkit.yaml
    modalkit init NAME [--modalkit-path DIR]
    modalkit jobs dead-letters [--journal FILE | --config FILE] [--json]
    modalkit jobs redrive JOB_ID... [--journal FILE | --config FILE]

Exit status: 0 on success, 1 when ``validate`` finds errors or ``modal deploy`` fails, 2 for a user error
(bad usage, a missing or invalid file, no Modal login), printed as one readable message without a stack trace,
3 when ``serve`` stopped because a model failed to load (``--keep-running`` keeps serving the others).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from modalkit.errors import ModalkitError
from modalkit_auth import AuthError
from modalkit_config import ConfigError
from modalkit_pipeline import PipelineError
from modalkit_queue import QueueError
from modalkit_serve import use_config_beside
from modalkit_serve._service import add_serve_arguments, serve_app_file

__all__ = ["main"]

PROG = "modalkit"

# The root errors of every modalkit package: each carries a message written for a person (what, where, the fix).
_USER_ERRORS = (ModalkitError, ConfigError, AuthError, QueueError, PipelineError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve ML models over HTTP: locally (`serve`) and on Modal (`deploy`)."
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="print the version of every modalkit package and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve an app file on this machine (no Modal account needed)")
    add_serve_arguments(serve)

    deploy = commands.add_parser("deploy", help="deploy an app file to Modal (`modal deploy` with the config)")
    deploy.add_argument("app", help="the app file, e.g. app.py")
    deploy.add_argument("--config", help="config file(s), comma-separated (default: the modalkit.yaml beside APP)")
    deploy.add_argument(
        "--postfix", help="app name postfix, e.g. --postfix=-prod (sets MODALKIT_APP_POSTFIX; default: -dev)"
    )
    deploy.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    deploy.epilog = "Arguments after `--` go to `modal deploy` unchanged."

    validate = commands.add_parser("validate", help="check modalkit.yaml files and print every error")
    validate.add_argument("files", nargs="*", metavar="FILE", help="files to check (default: modalkit.yaml)")
    validate.add_argument(
        "--no-env",
        action="store_true",
        help="check the files alone (default: with the MODALKIT_ variables and ./.env, as serve loads them)",
    )

    commands.add_parser("schema", help="print the JSON Schema of modalkit.yaml")

    init = commands.add_parser("init", help="create a new project: pipeline, config, app.py and passing tests")
    init.add_argument("name", help="the project name; a folder of that name is created")
    init.add_argument(
        "--modalkit-path",
        help="folder holding the modalkit packages to depend on (default: where this modalkit is installed "
        "from, when that is a local checkout; else the package index)",
    )
    jobs = commands.add_parser("jobs", help="the async job journal: list dead letters, send them again")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    dead = actions.add_parser("dead-letters", help="list the dead-lettered jobs (works while the server runs)")
    dead.add_argument("--json", action="store_true", help="one JSON object per line")
    redrive = actions.add_parser(
        "redrive", help="put dead-lettered jobs back; the server sends them at its next start (stop it first)"
    )
    redrive.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    for action in (dead, redrive):
        action.add_argument("--journal", help="the journal file (default: server_config.journal_path of --config)")
        action.add_argument("--config", help="config file(s), comma-separated (default: modalkit.yaml)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` is for `modal deploy`; argparse would otherwise read it as modalkit options.
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = _parser().parse_args(argv)
    args.modal_args = passthrough
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "deploy":
            return _deploy(args)
        if args.command == "validate":
            return _validate(args.files, use_env=not args.no_env)
        if args.command == "schema":
            return _schema()
        if args.command == "jobs":
            from modalkit._jobs_cli import jobs_command

            return jobs_command(args)
        return _init(args)
    except _USER_ERRORS as exc:
        _error(str(exc))
        return 2
    except _serve_error() as exc:  # a journal that cannot be used, from `jobs`
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130


def _serve_error() -> type[Exception]:
    from modalkit_serve.errors import ServeError

    return ServeError


def _serve(args: argparse.Namespace) -> int:
    from modalkit._serve import find_service
    from modalkit_serve import configure_logging
    from modalkit_serve.errors import ModelLoadError, ServeError

    def loading() -> None:
        # Logging at INFO until the app's own settings are read (`run` configures it again with their level).
        configure_logging("INFO", log_format=args.log_format)
        logging.getLogger(PROG).info("loading %s", args.app)

    try:
        serve_app_file(args, finder=find_service, user_errors=(ModalkitError,), on_loading=loading)
    except ModelLoadError as exc:
        _error(str(exc))
        return exc.exit_status
    except ServeError as exc:
        _error(str(exc))
        return 2
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from modalkit._deploy import check_modal_login, plan_deploy, run_deploy
    from modalkit_serve._appfile import check_config_flag

    check_config_flag(args.config)
    use_config_beside(args.app, args.config)
    plan = plan_deploy(args.app, postfix=args.postfix, modal_args=args.modal_args)
    shown_env = " ".join(f"{k}={v}" for k, v in plan.env.items())
    if args.dry_run:
        print(f"would run: {shown_env} {' '.join(plan.command)}")
        print(f"app name: {plan.app_name}")
        return 0
    check_modal_login()
    _progress(f"deploying {plan.app_file} to Modal as app {plan.app_name!r} ({shown_env})")
    status = run_deploy(plan)
    if status != 0:
        _error(f"`modal deploy` failed (exit status {status}); its messages are above")
        return 1
    _progress(f"deployed {plan.app_name!r}")
    return 0


def _validate(files: list[str], *, use_env: bool) -> int:
    from modalkit_config.cli import main as config_main
    from modalkit_queue import registered_backends

    options = [] if use_env else ["--no-env"]
    if not files:
        # What serve reads: the overlays MODALKIT_CONFIG lists, merged, else ./modalkit.yaml.
        default = os.environ.get("MODALKIT_CONFIG") or "modalkit.yaml"
        files = [f.strip() for f in default.split(",") if f.strip()]
        options.append("--merge")
    return config_main(["validate", *options, *files], queue_backends=registered_backends())


def _schema() -> int:
    from modalkit_config.cli import main as config_main

    return config_main(["schema"])


def _init(args: argparse.Namespace) -> int:
    from modalkit._scaffold import next_steps, scaffold

    target = Path(args.name)
    created = scaffold(target, modalkit_path=args.modalkit_path)
    _progress(f"created {target}/ ({len(created)} files)")
    print(f"\nnext:\n  cd {target}\n{next_steps(indent='  ')}")
    return 0


def _progress(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


class _VersionAction(argparse.Action):
    # argparse's own "version" action re-wraps the text into one paragraph: one package per line is kept here.
    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(_versions())
        parser.exit()


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = ["modalkit", "modalkit-pipeline", "modalkit-config", "modalkit-queue", "modalkit-auth", "modalkit-serve"]
    lines = []
    for name in [*names, "modal", "fastapi", "pydantic"]:
        try:
            lines.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            lines.append(f"{name} (not installed)")
    return "\n".join([*lines, f"python {sys.version.split()[0]}"])


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
