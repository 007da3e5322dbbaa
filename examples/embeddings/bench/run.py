"""Real-model throughput: the embeddings example under modalkit (batching) against bare FastAPI (one call a request).

    cd examples/embeddings && uv run --no-sync python bench/run.py [--seconds 5]

Both servers load the same model file and use the same MiniLM.embed; they run side by side on free loopback
ports and wrk drives each at 1, 16 and 64 connections in turn. Prints req/s, p50/p99 and modalkit's mean batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent
BODY = json.dumps({"text": "How do I put several requests into one model call to raise throughput?"})
LUA = 'wrk.method = "POST"\nwrk.body = os.getenv("BENCH_BODY")\nwrk.headers["Content-Type"] = "application/json"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODALKIT_CONFIG": str(EXAMPLE / "modalkit.yaml")}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=EXAMPLE, stdout=out, stderr=out, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2)
            return proc
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{argv} not ready; see {log}")


def batch_totals(port: int) -> tuple[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = sum(float(x) for x in re.findall(r"^modalkit_batch_size_sum\S* (\S+)$", text, re.M))
    count = sum(float(x) for x in re.findall(r"^modalkit_batch_size_count\S* (\S+)$", text, re.M))
    return total, count


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:  # wrk prints no latency when no request completed in the window
        return float("nan")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(port: int, connections: int, seconds: int, lua: Path) -> tuple[float, float, float]:
    threads = str(min(connections, 2))
    out = subprocess.run(
        [
            "wrk",
            "-t",
            threads,
            "-c",
            str(connections),
            "-d",
            f"{int(seconds)}s",
            "--latency",
            "--timeout",
            "60s",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}/predict_sync",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_BODY": BODY},
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"  wrk socket errors at c={connections}: {errors.group(1)}", flush=True)
    return rps, p50, p99


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="emb-bench-"))
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    mk_port, bare_port = free_port(), free_port()
    procs = {
        "modalkit": (
            start(
                [sys.executable, "-m", "modalkit", "serve", "app.py", "--host", "127.0.0.1", "--port", str(mk_port)],
                mk_port,
                tmp / "modalkit.log",
            ),
            mk_port,
        ),
        "bare FastAPI": (
            start(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(HERE),
                    "bare_app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(bare_port),
                    "--log-level",
                    "warning",
                ],
                bare_port,
                tmp / "bare.log",
            ),
            bare_port,
        ),
    }
    rows = [
        "| connections | server | req/s | p50 ms | p99 ms | mean batch | vs bare |",
        "|---|---|---|---|---|---|---|",
    ]
    try:
        for conc in (1, 16, 64):
            base = 0.0
            for name in ("bare FastAPI", "modalkit"):
                _, port = procs[name]
                wrk(port, conc, 1, lua)  # warm-up
                before = batch_totals(port) if name == "modalkit" else (0.0, 0.0)
                rps, p50, p99 = wrk(port, conc, args.seconds, lua)
                mean = "1 (unbatched)"
                if name == "modalkit":
                    after = batch_totals(port)
                    mean = f"{(after[0] - before[0]) / max(after[1] - before[1], 1):.1f}"
                base = base or rps
                rows.append(f"| {conc} | {name} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {mean} | {rps / base:.2f}x |")
                print(rows[-1], flush=True)
    finally:
        for proc, _ in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
