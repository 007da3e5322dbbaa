"""modalkit serving the simulated accelerator (20 ms + 0.5 ms per item, one batch at a time).

Settings are in modalkit.yaml next to this file. Serve it with:

    uv run python -m modalkit_serve.cli benchmarks/apps/accel/app.py --port 8000
"""

from __future__ import annotations

import sys
from pathlib import Path

# The shared benchmark models live one folder up (benchmarks/apps), not in an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_pipelines import AccelPipeline, LengthOutput, TextInput

from modalkit_config import load_settings
from modalkit_serve import ServiceSpec

spec = ServiceSpec(
    pipeline_cls=AccelPipeline,
    settings=load_settings([Path(__file__).resolve().parent / "modalkit.yaml"]),
    input_model=TextInput,
    output_model=LengthOutput,
)
