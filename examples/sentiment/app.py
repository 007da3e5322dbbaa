"""The sentiment service: `uv run modalkit-serve examples/sentiment/app.py` serves it on http://127.0.0.1:8000.

The settings come from the modalkit.yaml beside this file (or the files named by MODALKIT_CONFIG).
"""

from __future__ import annotations

from sentiment_model import SentimentPipeline

from modalkit_serve import ServiceSpec

service = ServiceSpec(SentimentPipeline)
