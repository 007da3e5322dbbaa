"""Serving benchmark: modalkit against a bare FastAPI endpoint and LitServe, driven by wrk on loopback.

    uv run python benchmarks/serving.py                # both scenarios, about 8 minutes
    uv run python benchmarks/serving.py --scenario accel --windows 3

Scenario ``trivial``: a model that takes microseconds (``len(text)``); modalkit with batching on
(max_batch_size 32) against a bare FastAPI + uvicorn endpoint, at 1, 16 and 64 connections.
Scenario ``accel``: a simulated accelerator (20 ms + 0.5 ms per item, one batch at a time under a lock);
modalkit and LitServe 0.2.19 (both batching up to 32; LitServe with ``batch_timeout`` 0.01 as in issue 16)
against the bare endpoint calling the model once per request, at 1, 4, 16, 32 and 64 connections. Its physical
limit is 32 / (0.020 + 0.0005 * 32) = 889 requests/s; ``bound(c)``, the best c closed-loop clients can get,
is min(c, 32) items per call: min(c, 32) / (0.020 + 0.0005 * min(c, 32)) requests/s.
Scenario ``minilm``: the real all-MiniLM-L6-v2 int8 ONNX model on CPU under bare FastAPI (unbatched), modalkit,
LitServe 0.2.19 and BentoML 1.4.40 (batching up to 32; wait 5 ms where the framework has a wait window), each in
a venv with onnxruntime that never enters the root environment (see _minilm.py), at 1, 16 and 64 connections.

Every server runs as its own process on a free loopback port; all servers of a scenario run side by side and
their measured windows are interleaved, so background load hits them alike. Each window is one wrk process;
between windows the server drains what wrk left in flight. Figures are medians over the windows; latencies
are the ones requests really had (see _wrk.py for wrk's coordinated-omission correction and why we undo it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import _minilm
import _wrk
from _servers import (
    BENCH_DIR,
    Probe,
    ServerError,
    ServerProcess,
    drain,
    idle_latency,
    litserve_python,
)

sys.path.insert(0, str(BENCH_DIR / "apps"))
from sim_models import ACCEL_BASE_SECONDS, ACCEL_PER_ITEM_SECONDS, MAX_BATCH_SIZE, physical_limit_rps

RESULTS_DIR = BENCH_DIR / "results"
OPEN_LOADS = (30, 60, 90)
"""Open-loop arrival rates, in percent of the accelerator's physical limit."""
TEXT = "modalkit benchmark: a short sentence to measure."
BODY = json.dumps({"text": TEXT})
LITSERVE = "LitServe 0.2.19"
BENTOML = "BentoML 1.4.40"
MINILM_BARE = "bare FastAPI (unbatched)"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def expected_answer(probe: Probe) -> bool:
    """The right answer to BODY from every server: HTTP 200 and the length of TEXT."""
    if probe.status != 200:
        return False
    try:
        answer = json.loads(probe.body)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("length") == len(TEXT) and answer.get("status") == "success"


@dataclass(frozen=True)
class Contender:
    """One server in a scenario: how to start it and when it is ready."""

    name: str
    argv: list[str]
    ready_path: str
    body: str = BODY
    """The request body wrk and the probes send (BentoML's batchable API takes a list)."""
    batch_log: Path | None = None
    """Where the server's model appends each batch size (``MINILM_BATCH_LOG``); None: modalkit's metrics, if any."""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    model_name: str
    concurrencies: tuple[int, ...]
    baseline: str
    contenders: list[Contender]
    answer_ok: Callable[[Probe], bool] = expected_answer
    """Whether a server's answer to a probe is right."""

    @property
    def path(self) -> str:
        return f"/predict_sync?model_name={self.model_name}"


@dataclass(frozen=True)
class Window:
    """One measured wrk window and what was observed on the server meanwhile."""

    run: _wrk.WrkRun
    cpu_s: float
    drain_s: float
    mean_batch: float | None


@dataclass
class Cell:
    """All measured windows of one server at one concurrency."""

    windows: list[_wrk.WrkRun] = field(default_factory=list)
    cpu_us_per_request: list[float] = field(default_factory=list)
    drain_s: list[float] = field(default_factory=list)
    mean_batches: list[float] = field(default_factory=list)

    def add(self, window: Window) -> None:
        run = window.run
        self.windows.append(run)
        # No CPU seen: the server's work ran outside its process group (BentoML's worker starts its own session).
        seen = run.requests and window.cpu_s > 0
        self.cpu_us_per_request.append(window.cpu_s / run.requests * 1e6 if seen else float("nan"))
        self.drain_s.append(window.drain_s)
        if window.mean_batch is not None:
            self.mean_batches.append(window.mean_batch)

    @property
    def mean_batch(self) -> str:
        return f"{statistics.median(self.mean_batches):.1f}" if self.mean_batches else "-"

    def median(self, fn: Callable[[_wrk.WrkRun], float]) -> float:
        return statistics.median(fn(w) for w in self.windows)

    @property
    def rps(self) -> float:
        return self.median(lambda w: w.rps)

    @property
    def p50_ms(self) -> float:
        return self.median(lambda w: _wrk.percentile(w.latencies, 50) / 1000)

    @property
    def p99_ms(self) -> float:
        return self.median(lambda w: _wrk.percentile(w.latencies, 99) / 1000)

    @property
    def mean_ms(self) -> float:
        return self.median(
            lambda w: sum(v * n for v, n in w.latencies.items()) / max(1, sum(w.latencies.values())) / 1000
        )

    @property
    def wrk_p99_ms(self) -> float:
        """wrk's own (corrected) p99, kept in the JSON for comparison."""
        return self.median(lambda w: _wrk.percentile(w.corrected, 99) / 1000)

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.windows)

    @property
    def cpu_us(self) -> float:
        return statistics.median(self.cpu_us_per_request) if self.cpu_us_per_request else float("nan")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in a process group (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: process group
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def modalkit_contenders(app: str, *, quiet_variant: bool) -> list[Contender]:
    """``modalkit serve apps/<app>/app.py`` (the user's command), or nothing if modalkit cannot serve here."""
    if importlib.util.find_spec("modalkit") is not None and importlib.util.find_spec("modalkit.cli") is not None:
        command = [sys.executable, "-m", "modalkit", "serve"]
    elif importlib.util.find_spec("modalkit_serve") is not None:
        command = [sys.executable, "-m", "modalkit_serve.cli"]
    else:
        log("neither modalkit nor modalkit-serve is installed: modalkit is left out of this run")
        return []
    base = [*command, f"apps/{app}/app.py", "--host", "127.0.0.1", "--port", "{port}"]
    out = [Contender("modalkit", base, "/ready")]
    if quiet_variant:
        out.append(Contender("modalkit (no request log)", [*base, "--log-level", "WARNING"], "/ready"))
    return out


def bound_rps(connections: int) -> float:
    """The most ``connections`` closed-loop clients can get from the accelerator: all of them in every call."""
    n = min(connections, MAX_BATCH_SIZE)
    return n / (ACCEL_BASE_SECONDS + ACCEL_PER_ITEM_SECONDS * n)


def build_scenarios(
    selected: str,
    litserve_trivial: bool,
    fast_queue: bool,
    accel_concurrencies: tuple[int, ...] = (1, 4, 16, 32, 64),
    open_loads: tuple[int, ...] = OPEN_LOADS,
) -> list[Scenario]:
    bare = [sys.executable, "apps/bare_fastapi.py"]
    scenarios = []
    need_litserve = selected in ("all", "accel", "openloop") or litserve_trivial
    ls_python = litserve_python(log) if need_litserve else None
    ls_args = ["--fast-queue"] if fast_queue else []
    if selected in ("all", "trivial"):
        contenders = [Contender("bare FastAPI", [*bare, "trivial", "--port", "{port}"], "/health")]
        contenders += modalkit_contenders("trivial", quiet_variant=True)
        if litserve_trivial and ls_python:
            argv = [str(ls_python), "apps/litserve_app.py", "trivial", "--port", "{port}", *ls_args]
            contenders.append(Contender(LITSERVE, argv, "/health"))
        scenarios.append(Scenario("trivial", "(a) trivial model", "trivial", (1, 16, 64), "bare FastAPI", contenders))
    ls_accel: list[Contender] = []
    if ls_python:
        argv = [str(ls_python), "apps/litserve_app.py", "accel", "--port", "{port}", "--batch-timeout", "0.01"]
        ls_accel.append(Contender(LITSERVE, [*argv, *ls_args], "/health"))
    if selected in ("all", "accel"):
        contenders = [Contender("bare FastAPI (unbatched)", [*bare, "accel", "--port", "{port}"], "/health")]
        contenders += modalkit_contenders("accel", quiet_variant=False) + ls_accel
        scenarios.append(
            Scenario(
                "accel",
                "(b) simulated accelerator",
                "accel",
                accel_concurrencies,
                "bare FastAPI (unbatched)",
                contenders,
            )
        )
    if selected in ("all", "minilm"):
        scenarios += minilm_scenario()
    if selected in ("all", "openloop"):
        # No unbatched baseline: at 30% of the limit it already gets more arrivals than it can ever serve.
        contenders = modalkit_contenders("accel", quiet_variant=False) + ls_accel
        title = "(c) simulated accelerator, open loop (Poisson arrivals)"
        scenarios.append(Scenario("openloop", title, "accel", open_loads, LITSERVE, contenders))
    return scenarios


def minilm_scenario() -> list[Scenario]:
    """Scenario (d): the real MiniLM under bare FastAPI, modalkit, LitServe and BentoML (see _minilm.py)."""
    batches = Path(tempfile.mkdtemp(prefix="minilm-batches-"))
    contenders: list[Contender] = []
    example = _minilm.example_python(log)
    if example is None:
        log("the embeddings example's venv could not be built: the MiniLM scenario is skipped")
        return []
    contenders.append(Contender(MINILM_BARE, [str(example), "apps/minilm_bare.py", "--port", "{port}"], "/health"))
    serve = [str(example), "-m", "modalkit", "serve", "apps/minilm/app.py", "--host", "127.0.0.1", "--port", "{port}"]
    contenders.append(Contender("modalkit", serve, "/ready"))
    ls_python = _minilm.peer_python("litserve", log)
    if ls_python:
        contenders.append(
            Contender(LITSERVE, [str(ls_python), "apps/minilm_litserve.py", "--port", "{port}"], "/health")
        )
    bento_python = _minilm.peer_python("bentoml", log)
    if bento_python:
        argv = [str(bento_python.parent / "bentoml"), "serve", "minilm_bentoml:MiniLMService", "--working-dir", "apps"]
        argv += ["--host", "127.0.0.1", "--port", "{port}"]
        contenders.append(Contender(BENTOML, argv, "/readyz", body=_minilm.BENTOML_BODY))
    contenders = [
        dataclasses.replace(c, batch_log=batches / f"{i}.log", body=c.body if c.name == BENTOML else _minilm.BODY)
        for i, c in enumerate(contenders)
    ]
    title = "(d) real model: all-MiniLM-L6-v2 int8 ONNX on CPU"
    return [Scenario("minilm", title, "minilm", (1, 16, 64), MINILM_BARE, contenders, _minilm.answer_ok)]


@contextlib.contextmanager
def running(scenario: Scenario, logs_dir: Path) -> Iterator[dict[str, ServerProcess]]:
    servers: dict[str, ServerProcess] = {}
    try:
        for c in scenario.contenders:
            slug = "".join(ch if ch.isalnum() else "-" for ch in c.name.lower())
            env = {"MINILM_BATCH_LOG": str(c.batch_log)} if c.batch_log else None
            servers[c.name] = ServerProcess(c.name, c.argv, logs_dir / f"{scenario.key}-{slug}.log", env)
            servers[c.name].start()
        for c in scenario.contenders:
            servers[c.name].wait_ready(c.ready_path)
            log(f"  {c.name}: ready on port {servers[c.name].port} (pid {servers[c.name].pid})")
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def batch_totals(server: ServerProcess, batch_log: Path | None = None) -> tuple[float, float] | None:
    """Sum and count of the batch sizes so far: from ``batch_log`` if given, else modalkit's
    ``modalkit_batch_size`` histogram (all models), or None for other servers."""
    if batch_log is not None:
        return _minilm.batch_log_totals(batch_log)
    if not server.name.startswith("modalkit"):
        return None
    text = server.request("GET", "/metrics").body.decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("modalkit_batch_size_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("modalkit_batch_size_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def measure(
    server: ServerProcess,
    path: str,
    connections: int,
    seconds: float,
    idle_s: float,
    contender: Contender | None = None,
    answer_ok: Callable[[Probe], bool] = expected_answer,
) -> Window:
    """One wrk window, the server's CPU time and mean batch size during it, and how long it then took to drain."""
    assert server.pid is not None
    body, batch_log = (contender.body, contender.batch_log) if contender else (BODY, None)
    threads = 1 if connections == 1 else 2  # two cores: wrk's threads share them with the server
    batches_before = batch_totals(server, batch_log)
    cpu_before = group_cpu_seconds(server.pid)
    run = _wrk.run_wrk(server.url(path), body, connections, threads, seconds)
    cpu = group_cpu_seconds(server.pid) - cpu_before
    batches_after = batch_totals(server, batch_log)
    mean_batch = None
    if batches_before and batches_after and batches_after[1] > batches_before[1]:
        mean_batch = (batches_after[0] - batches_before[0]) / (batches_after[1] - batches_before[1])
    drained = drain(server, path, body, idle_s, answer_ok)
    return Window(run, cpu, drained, mean_batch)


def run_openloop(server: ServerProcess, path: str, rate: float, seconds: float, seed: int) -> _wrk.WrkRun:
    """One open-loop window (benchmarks/_openloop.py in its own process): Poisson arrivals at ``rate`` per second."""
    argv = [sys.executable, str(BENCH_DIR / "_openloop.py"), "--port", str(server.port), "--path", path]
    argv += ["--body", BODY, "--rate", f"{rate:g}", "--seconds", f"{seconds:g}", "--seed", str(seed)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if proc.returncode != 0:
        raise _wrk.WrkError(f"the open-loop generator failed: {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout)
    latencies = {int(k): v for k, v in out["latencies_us"].items()}
    late_ms = out["p99_lateness_us"] / 1000
    if late_ms > 5:
        log(f"  note: the generator's p99 send lateness was {late_ms:.1f} ms (it could not keep its schedule)")
    return _wrk.WrkRun(
        duration_s=seconds,
        requests=out["requests"],
        connections=out["connections"],
        status_errors=out["status_errors"],
        socket_errors=out["socket_errors"],
        corrected=latencies,
        latencies=latencies,
    )


def measure_open(server: ServerProcess, path: str, rate: float, seconds: float, seed: int, idle_s: float) -> Window:
    """`measure` for an open-loop window: the same CPU, batch and drain figures around `run_openloop`."""
    assert server.pid is not None
    batches_before = batch_totals(server)
    cpu_before = group_cpu_seconds(server.pid)
    run = run_openloop(server, path, rate, seconds, seed)
    cpu = group_cpu_seconds(server.pid) - cpu_before
    batches_after = batch_totals(server)
    mean_batch = None
    if batches_before and batches_after and batches_after[1] > batches_before[1]:
        mean_batch = (batches_after[0] - batches_before[0]) / (batches_after[1] - batches_before[1])
    drained = drain(server, path, BODY, idle_s, expected_answer)
    return Window(run, cpu, drained, mean_batch)


def run_scenario(scenario: Scenario, args: argparse.Namespace, logs_dir: Path) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], Cell] = {}
    log(f"{scenario.title}: starting {', '.join(c.name for c in scenario.contenders)}")
    with running(scenario, logs_dir) as servers:
        by_name = {c.name: c for c in scenario.contenders}
        idle = {
            name: idle_latency(s, scenario.path, by_name[name].body, scenario.answer_ok) for name, s in servers.items()
        }
        for name, seconds in idle.items():
            log(f"  {name}: idle latency {seconds * 1000:.2f} ms, answers checked")
        if scenario.key == "minilm":
            same_answers(servers, by_name, scenario.path)
        names = list(servers)
        open_loop = scenario.key == "openloop"
        for conc in scenario.concurrencies:
            rate = conc / 100 * physical_limit_rps()  # open loop: `conc` is the load in percent of the limit

            def window(name: str, seconds: float, seed: int, conc: int = conc, rate: float = rate) -> Window:
                if open_loop:
                    return measure_open(servers[name], scenario.path, rate, seconds, seed, idle[name])
                return measure(
                    servers[name], scenario.path, conc, seconds, idle[name], by_name[name], scenario.answer_ok
                )

            for name in names:
                window(name, args.warmup, seed=1000)
            for i in range(args.windows):
                # Rotate the order so no server always runs right after the same neighbour; in the open loop every
                # server of a window gets the same arrival times (the same seed).
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    cells.setdefault((name, conc), Cell()).add(window(name, args.seconds, seed=i))
            if open_loop:
                summary = ", ".join(f"{n} p99 {cells[(n, conc)].p99_ms:,.1f} ms" for n in names)
                log(f"  {conc}% of the limit ({rate:,.0f} req/s): {summary}")
            else:
                summary = ", ".join(f"{n} {cells[(n, conc)].rps:,.0f} req/s" for n in names)
                log(f"  c={conc}: {summary}")
    return cells


def same_answers(servers: dict[str, ServerProcess], contenders: dict[str, Contender], path: str) -> None:
    """Every server runs the same model: their embeddings of the same text agree (cosine > 0.9999).

    Raises:
        ServerError: one server's embedding differs from the first one's.
    """
    vectors = {}
    for name, server in servers.items():
        vector = _minilm.embedding_of(server.request("POST", path, contenders[name].body).body)
        if vector is None:
            raise ServerError(f"{name} answered without an embedding")
        vectors[name] = vector
    first, reference = next(iter(vectors.items()))
    for name, vector in vectors.items():
        if _minilm.cosine(vector, reference) < 0.9999:
            raise ServerError(f"{name}'s embedding differs from {first}'s: not the same model")
    log(f"  all {len(vectors)} servers give the same embedding")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def report(scenario: Scenario, cells: dict[tuple[str, int], Cell]) -> list[str]:
    """Markdown table plus target checks for one scenario."""
    accel = scenario.key == "accel"
    open_loop = scenario.key == "openloop"
    limit = physical_limit_rps()
    head = "| load % of limit" if open_loop else "| c"
    head += " | server | req/s | p50 ms | p99 ms | errors | req/s vs base | p50 vs base | server CPU us/req |"
    head += " mean batch |"
    if open_loop:
        head += " p99 vs base |"
    if accel:
        head += " % of limit | % of bound(c) |"
    lines = [f"### {scenario.title}", "", head, "|" + " --- |" * (head.count("|") - 1)]
    names = [c.name for c in scenario.contenders]
    for conc in scenario.concurrencies:
        base = cells.get((scenario.baseline, conc))
        for name in names:
            cell = cells.get((name, conc))
            if cell is None or not cell.windows:
                continue
            row = (
                f"| {conc} | {name} | {cell.rps:,.0f} | {cell.p50_ms:.2f} | {cell.p99_ms:.2f} | {cell.errors} | "
                f"{ratio(cell.rps, base.rps) if base else '-'} | {ratio(cell.p50_ms, base.p50_ms) if base else '-'} | "
                f"{'-' if math.isnan(cell.cpu_us) else f'{cell.cpu_us:,.0f}'} | {cell.mean_batch} |"
            )
            if accel:
                row += f" {cell.rps / limit:.0%} | {cell.rps / bound_rps(conc):.0%} |"
            if open_loop:
                row += f" {ratio(cell.p99_ms, base.p99_ms) if base else '-'} |"
            lines.append(row)
    lines += ["", *targets(scenario, cells)]
    return lines


def targets(scenario: Scenario, cells: dict[tuple[str, int], Cell]) -> list[str]:
    """The issue's targets, each as a PASS/FAIL line."""
    out: list[str] = []

    def check(ok: bool, text: str) -> None:
        out.append(f"- {'PASS' if ok else 'FAIL'}: {text}")

    mk = "modalkit"
    if not any(name == mk for name, _ in cells):
        return ["- modalkit was not measured in this run"]
    if scenario.key == "openloop":
        for load in scenario.concurrencies:
            m, ls = cells.get((mk, load)), cells.get((LITSERVE, load))
            if m is None:
                continue
            if ls is None:
                out.append(f"- {load}% of the limit: LitServe was not measured in this run")
                continue
            check(
                m.p99_ms <= ls.p99_ms,
                f"{load}% of the limit: p99 {m.p99_ms:.1f} ms vs LitServe {ls.p99_ms:.1f} ms (no worse); "
                f"p50 {m.p50_ms:.1f} vs {ls.p50_ms:.1f} ms, mean batch {m.mean_batch}",
            )
    elif scenario.key == "minilm":
        for conc in scenario.concurrencies:
            m = cells.get((mk, conc))
            if m is None or conc == 1:
                continue
            for peer in (LITSERVE, BENTOML):
                p = cells.get((peer, conc))
                if p is None:
                    out.append(f"- c={conc}: {peer} was not measured in this run")
                    continue
                check(
                    m.rps > p.rps,
                    f"c={conc} ahead of {peer}: {m.rps:,.0f} vs {p.rps:,.0f} req/s ({ratio(m.rps, p.rps)}), "
                    f"mean batch {m.mean_batch} vs {p.mean_batch}",
                )
        m, b = cells.get((mk, 64)), cells.get((scenario.baseline, 64))
        if m and b:
            check(m.rps >= 2 * b.rps, f"c=64 {ratio(m.rps, b.rps)} unbatched bare FastAPI (target >= 2x)")
    elif scenario.key == "trivial":
        for conc in scenario.concurrencies:
            m, b = cells[(mk, conc)], cells[(scenario.baseline, conc)]
            check(m.rps >= 0.85 * b.rps, f"c={conc} throughput {m.rps / b.rps:.2f}x bare FastAPI (target >= 0.85x)")
            check(m.p50_ms <= 1.25 * b.p50_ms, f"c={conc} p50 {m.p50_ms / b.p50_ms:.2f}x bare (target <= 1.25x)")
    else:
        limit = physical_limit_rps()
        bare_model_ms = (ACCEL_BASE_SECONDS + ACCEL_PER_ITEM_SECONDS) * 1000
        m1 = cells.get((mk, 1))
        for conc in scenario.concurrencies:
            m = cells.get((mk, conc))
            if m is None:
                continue
            bound = bound_rps(conc)
            if conc >= 4:
                check(
                    m.rps >= 0.95 * bound,
                    f"c={conc} {m.rps:,.0f} req/s = {m.rps / bound:.1%} of bound(c) {bound:,.0f} (>= 95%; "
                    f"{m.rps / limit:.1%} of the limit), mean batch {m.mean_batch}",
                )
            ls = cells.get((LITSERVE, conc))
            if ls:
                check(m.rps > ls.rps, f"c={conc} ahead of LitServe: {m.rps:,.0f} vs {ls.rps:,.0f} req/s")
            else:
                out.append(f"- c={conc}: LitServe was not measured in this run")
        if m1:
            check(
                m1.p50_ms <= 1.1 * bare_model_ms,
                f"c=1 p50 {m1.p50_ms:.2f} ms = {m1.p50_ms / bare_model_ms:.2f}x the bare model time "
                f"{bare_model_ms} ms (<= 1.1x)",
            )
    errors = sum(c.errors for (name, _), c in cells.items() if name == mk)
    check(errors == 0, f"modalkit errors: {errors}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="modalkit serving benchmark (wrk on loopback)")
    parser.add_argument("--scenario", choices=["all", "trivial", "accel", "openloop", "minilm"], default="all")
    parser.add_argument("--windows", type=int, default=5, help="measured windows per server and concurrency")
    parser.add_argument("--seconds", type=float, default=5, help="length of one measured window")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured wrk run before the windows")
    parser.add_argument(
        "--concurrency", type=int, action="append", help="only these connection counts (repeatable; default: all)"
    )
    parser.add_argument(
        "--accel-concurrencies", type=lambda v: tuple(int(x) for x in v.split(",")), default=(1, 4, 16, 32, 64)
    )
    parser.add_argument(
        "--open-loads",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        default=OPEN_LOADS,
        help="open-loop arrival rates in percent of the physical limit (default 30,60,90)",
    )
    parser.add_argument("--litserve-trivial", action="store_true", help="also run LitServe in the trivial scenario")
    parser.add_argument("--fast-queue", action="store_true", help="LitServe with ZeroMQ queues (fast_queue=True)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs (modalkit's are large)")
    parser.add_argument("--out", type=Path, help="JSON results file (default: benchmarks/results/serving-<time>.json)")
    args = parser.parse_args(argv)
    try:
        wrk = _wrk.find_wrk()
    except _wrk.WrkError as exc:
        print(exc, file=sys.stderr)
        return 2

    started = time.monotonic()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs_dir = RESULTS_DIR / f"logs-{stamp}"
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, {platform.system()}"
    log(f"machine: {machine}; load average {os.getloadavg()[0]:.2f}; wrk: {wrk}")
    lines = [
        f"Measured {dt.date.today().isoformat()} on {machine}; {args.windows} windows of {args.seconds:g} s "
        f"after a {args.warmup:g} s warm-up; medians over windows.",
        "",
    ]
    results: dict[str, object] = {"machine": machine, "date": stamp, "args": {k: str(v) for k, v in vars(args).items()}}
    try:
        for scenario in build_scenarios(
            args.scenario, args.litserve_trivial, args.fast_queue, args.accel_concurrencies, args.open_loads
        ):
            if args.concurrency:
                scenario = dataclasses.replace(scenario, concurrencies=tuple(args.concurrency))
            cells = run_scenario(scenario, args, logs_dir)
            lines += [*report(scenario, cells), ""]
            results[scenario.key] = {
                f"{name} @ c={conc}": {
                    "rps": cell.rps,
                    "p50_ms": cell.p50_ms,
                    "p99_ms": cell.p99_ms,
                    "mean_ms": cell.mean_ms,
                    "wrk_corrected_p99_ms": cell.wrk_p99_ms,
                    "errors": cell.errors,
                    "server_cpu_us_per_request": cell.cpu_us,
                    "mean_batch_size": cell.mean_batch,
                    "windows_rps": [w.rps for w in cell.windows],
                    "drain_s": cell.drain_s,
                }
                for (name, conc), cell in cells.items()
            }
    except (ServerError, _wrk.WrkError) as exc:
        print(f"benchmark failed: {exc}\nserver logs: {logs_dir}", file=sys.stderr)
        return 1
    if not args.keep_logs:
        # modalkit's JSON request log alone is ~300 MB per full run; logs matter only when something failed.
        shutil.rmtree(logs_dir, ignore_errors=True)
    lines.append(f"Wall time {time.monotonic() - started:.0f} s; load average at the end {os.getloadavg()[0]:.2f}.")
    print("\n" + "\n".join(lines))
    out = args.out or RESULTS_DIR / f"serving-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    log(f"results written to {out}")
    missed = [line for line in lines if line.startswith("- FAIL")]
    if missed:
        log(f"{len(missed)} target(s) missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
