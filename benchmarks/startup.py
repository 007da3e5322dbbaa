"""Start-up time: `import modalkit`, and `modalkit serve APP` until /ready answers 200 (issue 23 item 10).

    uv run python benchmarks/startup.py [--runs 5]

Prints the median and the fastest of each. Two app files: a ServiceSpec file (no Modal objects, so no
`import modal` is needed) and the sentiment example (a Modal app file, which imports modal itself). Run it
before and after a change on the same machine and compare; the machine is shared, so read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC_APP = ROOT / "benchmarks" / "apps" / "startup_spec_app.py"
SENTIMENT_APP = ROOT / "examples" / "sentiment" / "app.py"


def time_import(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def time_serve(app: Path) -> float:
    with tempfile.TemporaryDirectory() as folder:
        port_file = Path(folder) / "port"
        argv = [sys.executable, "-m", "modalkit", "serve", str(app), "--host", "127.0.0.1", "--port", "0"]
        argv += ["--port-file", str(port_file)]
        start = time.perf_counter()
        process = subprocess.Popen(argv, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"modalkit serve {app} exited with {process.returncode}")
                if port_file.exists() and port_file.read_text().strip():
                    try:
                        url = f"http://127.0.0.1:{int(port_file.read_text())}/ready"
                        with urllib.request.urlopen(url, timeout=2) as answer:
                            if answer.status == 200:
                                return time.perf_counter() - start
                    except OSError:
                        pass
                time.sleep(0.02)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    cases = {
        "python -c 'import modalkit'": lambda: time_import("import modalkit"),
        "python -c 'import modal' (for scale)": lambda: time_import("import modal"),
        f"modalkit serve {SPEC_APP.name} -> /ready": lambda: time_serve(SPEC_APP),
        f"modalkit serve {SENTIMENT_APP.parent.name}/app.py -> /ready": lambda: time_serve(SENTIMENT_APP),
    }
    for name, case in cases.items():
        seconds = [case() for _ in range(runs)]
        print(f"{name:55s} median {statistics.median(seconds):6.2f} s   min {min(seconds):6.2f} s   ({runs} runs)")


if __name__ == "__main__":
    main()
