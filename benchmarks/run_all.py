"""Run every benchmark in benchmarks/ (``make bench``), each in its own process, and fail if one fails.

uv run python benchmarks/run_all.py            # serving, then queue delivery if present
uv run python benchmarks/run_all.py --quick    # shorter windows, for a smoke run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs (fewer windows, fewer messages)")
    args = parser.parse_args()
    serving = [sys.executable, str(BENCH_DIR / "serving.py")]
    if args.quick:
        serving += ["--windows", "2", "--seconds", "3", "--warmup", "1"]
    runs = [serving]
    queue = BENCH_DIR / "queue_delivery.py"
    if queue.exists():
        runs.append([sys.executable, str(queue), *(["--count", "2000", "--rounds", "1"] if args.quick else [])])
    failed = []
    for argv in runs:
        print(f"\n=== {Path(argv[1]).name} ===", flush=True)
        if subprocess.run(argv, check=False).returncode != 0:
            failed.append(Path(argv[1]).name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
