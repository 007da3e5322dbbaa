"""Async accept throughput with the SQLite job journal against the in-memory job store, in the same run.

    uv run python benchmarks/async_journal.py                      # 5 windows of 5 s at c=64, about 2 minutes
    uv run python benchmarks/async_journal.py --windows 2 --seconds 3

Three `modalkit serve apps/trivial/app.py` processes run side by side on loopback: the in-memory job store
(``server_config.journal_path: null``, the default), the journal with ``journal_synchronous: NORMAL`` and the
journal with ``FULL``. wrk sends ``POST /predict_async`` at 64 connections (each job delivered to the memory
queue backend); the windows of the three servers are interleaved, so background load on a shared machine hits
them alike. Figures are medians over the windows; the ratio is journaled jobs/s over in-memory jobs/s (the
goal of issue 13 is >= 0.8). After the run each journal is read back: every accepted job must be in it, and
none may be left unfinished once the server has drained.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import _wrk
from _servers import BENCH_DIR, Probe, ServerError, ServerProcess, drain, idle_latency
from serving import group_cpu_seconds

BODY = '{"message": {"text": "modalkit benchmark: a short sentence"}, "success_queue": "out"}'
PATH = "/predict_async?model_name=trivial"
GOAL = 0.8


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def accepted(probe: Probe) -> bool:
    """A 202 with a job id."""
    return probe.status == 202 and b'"job_id"' in probe.body


@dataclass
class Contender:
    name: str
    journal: Path | None
    server: ServerProcess
    runs: list[_wrk.WrkRun] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    idle_s: float = 0.0

    def median(self, p: float | None = None) -> float:
        if p is None:
            return statistics.median(r.rps for r in self.runs)
        return statistics.median(_wrk.percentile(r.latencies, p) / 1000 for r in self.runs)


def contenders(workdir: Path) -> list[Contender]:
    command = [sys.executable, "-m", "modalkit", "serve", "apps/trivial/app.py", "--host", "127.0.0.1"]
    command += ["--port", "{port}", "--log-level", "WARNING"]
    out = []
    for name, sync in (("in-memory store", None), ("journal NORMAL", "NORMAL"), ("journal FULL", "FULL")):
        journal = None
        argv = list(command)
        if sync is not None:
            journal = workdir / f"jobs-{sync.lower()}.sqlite"
            overlay = workdir / f"{sync.lower()}.yaml"
            overlay.write_text(
                f"app_settings:\n  server_config:\n    journal_path: {journal}\n    journal_synchronous: {sync}\n"
            )
            argv += ["--config", f"{BENCH_DIR / 'apps/trivial/modalkit.yaml'},{overlay}"]
        out.append(Contender(name, journal, ServerProcess(name, argv, workdir / f"{name.replace(' ', '-')}.log")))
    return out


def journal_states(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--windows", type=int, default=5, help="measured windows per server")
    parser.add_argument("--seconds", type=float, default=5, help="length of one window")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modalkit-bench-journal-") as tmp:
        servers = contenders(Path(tmp))
        try:
            for c in servers:
                c.server.start()
            for c in servers:
                c.server.wait_ready("/ready")
                c.idle_s = idle_latency(c.server, PATH, BODY, accepted)
            for c in servers:  # warm-up window, not measured
                _wrk.run_wrk(c.server.url(PATH), BODY, args.connections, 2, 1)
                drain(c.server, PATH, BODY, c.idle_s, accepted)
            for window in range(args.windows):
                for c in servers:
                    assert c.server.pid is not None
                    cpu = group_cpu_seconds(c.server.pid)
                    run = _wrk.run_wrk(c.server.url(PATH), BODY, args.connections, 2, args.seconds)
                    if run.errors:
                        raise ServerError(f"{c.name}: {run.errors} errors in window {window + 1}")
                    drain(c.server, PATH, BODY, c.idle_s, accepted)  # the jobs' delivery is part of their cost
                    c.cpu_us.append((group_cpu_seconds(c.server.pid) - cpu) / run.requests * 1e6)
                    c.runs.append(run)
                log(
                    f"window {window + 1}/{args.windows}: "
                    + ", ".join(f"{c.name} {c.runs[-1].rps:.0f}/s" for c in servers)
                )
        finally:
            for c in servers:
                c.server.stop()
        base = servers[0].median()
        print(f"\nPOST /predict_async at c={args.connections}, {args.windows} windows of {args.seconds:g} s (medians)")
        head = f"{'store':<18} {'jobs/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} {'CPU us/job':>10}"
        print(f"{head}  journal rows after drain")
        failures = []
        for c in servers:
            ratio = c.median() / base
            rows = "-"
            if c.journal is not None:
                states = journal_states(c.journal)
                rows = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                sent = sum(r.requests for r in c.runs)
                unfinished = sum(v for k, v in states.items() if k not in ("delivered", "dead_lettered"))
                if sum(states.values()) < sent or unfinished:
                    failures.append(f"{c.name}: {sent} accepted in the windows, journal has {rows}")
            cpu = statistics.median(c.cpu_us)
            figures = f"{c.median():>8.0f} {c.median(50):>7.1f} {c.median(99):>7.1f} {ratio:>5.2f}x {cpu:>10.0f}"
            print(f"{c.name:<18} {figures}  {rows}")
        normal = servers[1].median() / base
        print(
            f"\njournal NORMAL / in-memory: {normal:.2f}x (goal >= {GOAL}x: {'met' if normal >= GOAL else 'NOT met'})"
        )
        for failure in failures:
            print(f"LOST: {failure}", file=sys.stderr)
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
