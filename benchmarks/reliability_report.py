"""Run the reliability suite and render its figures as the table in benchmarks/RELIABILITY.md.

    uv run python benchmarks/reliability_report.py            # run the suite (-m reliability), print the table
    uv run python benchmarks/reliability_report.py --write    # ... and put it into benchmarks/RELIABILITY.md
    uv run python benchmarks/reliability_report.py --from-json figures.json   # render an earlier run

The suite (tests/reliability) writes its figures to the JSON file named by MODALKIT_RELIABILITY_REPORT; this
script sets that, runs pytest in a subprocess, and turns the JSON into a Markdown table. The figures are what the
run saw (requests answered, unexpected answers, async jobs accepted / delivered / dead-lettered, the server's
resident memory); nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "benchmarks" / "RELIABILITY.md"
START, END = "<!-- reliability-figures:start -->", "<!-- reliability-figures:end -->"
# Table order; scenarios the JSON has beyond these follow in its own order.
ORDER = [
    "load",
    "schemathesis",
    "hostile input",
    "overload (queue and outbox full)",
    "model raises on some inputs",
    "model hangs past the timeout",
    "Redis killed and restarted",
    "SQS endpoint stopped and restarted",
    "SSM unreachable",
    "SIGTERM during load",
    "headers",
    "slowloris",
    "idle connections",
    "connection bound",
    "cross-caller job read",
    "label cardinality",
    "oversized batch",
    "drain budget",
    "retry budget in time",
    "kill -9 during bursts (memory queue)",
    "kill -9 during bursts (SQS)",
    "kill -9 during bursts (taskiq on Redis)",
]
MAIN = {
    "tried",
    "requests",
    "errors",
    "jobs_accepted",
    "jobs_delivered",
    "jobs_dead_lettered",
    "rss_after_warm_up_mib",
    "rss_after_run_mib",
    "seconds",
}


def run_suite(report: Path, pytest_args: list[str]) -> tuple[int, float, str]:
    """Run ``pytest tests/reliability -m reliability``; returns (exit code, wall seconds, pytest's summary line)."""
    env = {**os.environ, "MODALKIT_RELIABILITY_REPORT": str(report)}
    command = [sys.executable, "-m", "pytest", "tests/reliability", "-m", "reliability", "-q", *pytest_args]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    lines = [line for line in done.stdout.splitlines() if " passed" in line or " failed" in line]
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-6000:] + done.stderr[-3000:])
    return done.returncode, wall, lines[-1].strip("= ") if lines else ""


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render(figures: dict[str, Any], wall: float | None = None, summary: str = "") -> str:
    """The Markdown table (and a line about the run)."""
    scenarios: dict[str, dict[str, Any]] = figures["scenarios"]
    names = [n for n in ORDER if n in scenarios] + [n for n in scenarios if n not in ORDER]
    rows = [
        "| scenario | what was tried | requests | errors | jobs accepted | delivered | dead-lettered "
        "| memory after warm-up → after run (MiB) | seconds | other figures |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for name in names:
        entry = scenarios[name]
        memory = "-"
        if "rss_after_warm_up_mib" in entry:
            memory = f"{cell(entry['rss_after_warm_up_mib'])} → {cell(entry.get('rss_after_run_mib'))}"
        other = ", ".join(f"{k.replace('_', ' ')}: {cell(v)}" for k, v in entry.items() if k not in MAIN)
        rows.append(
            "| "
            + " | ".join(
                [
                    name,
                    str(entry.get("tried", "")),
                    cell(entry.get("requests")),
                    cell(entry.get("errors")),
                    cell(entry.get("jobs_accepted")),
                    cell(entry.get("jobs_delivered")),
                    cell(entry.get("jobs_dead_lettered")),
                    memory,
                    cell(entry.get("seconds")),
                    other or "-",
                ]
            )
            + " |"
        )
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    run = f"Run: {time.strftime('%Y-%m-%d')}, {machine}"
    if wall is not None:
        run += f"; the whole suite took {wall:.0f} s"
    if summary:
        run += f" ({summary})"
    return "\n".join([run + ".", "", *rows])


def write_doc(table: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} has no {START} ... {END} block to fill")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"put the table into {DOC.relative_to(ROOT)}")
    parser.add_argument("--from-json", type=Path, help="render this figures file instead of running the suite")
    parser.add_argument("--keep-json", type=Path, help="also copy the figures of this run here")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)

    wall: float | None = None
    summary = ""
    if args.from_json is not None:
        figures = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        with tempfile.TemporaryDirectory(prefix="modalkit-reliability-") as tmp:
            path = Path(tmp) / "figures.json"
            code, wall, summary = run_suite(path, args.pytest_args)
            if code != 0:
                print(f"the reliability suite failed (exit {code}); no table written", file=sys.stderr)
                return code
            figures = json.loads(path.read_text(encoding="utf-8"))
            if args.keep_json is not None:
                args.keep_json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    table = render(figures, wall, summary)
    print(table)
    if args.write:
        write_doc(table)
        print(f"\nwritten to {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
