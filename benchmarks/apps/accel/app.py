"""modalkit serving the simulated accelerator (20 ms + 0.5 ms per item, one batch at a time).

Settings are in modalkit.yaml next to this file. Serve it with:

    uv run modalkit serve benchmarks/apps/accel/app.py --port 8000
"""

from __future__ import annotations

import sys
from pathlib import Path

# The shared benchmark models live one folder up (benchmarks/apps); the CLI only adds this folder to sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_pipelines import AccelPipeline

from modalkit_serve import ServiceSpec

# Settings: the modalkit.yaml next to this file (the CLI points MODALKIT_CONFIG at it).
service = ServiceSpec(AccelPipeline)
