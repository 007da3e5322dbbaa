#!/usr/bin/env bash
# The OCR example's own CI step: its locked environment (onnxruntime, rapidocr-onnxruntime with its
# PP-OCRv4 models, Pillow) and its tests, apart from the workspace's dev environment.
set -euo pipefail
cd "$(dirname "$0")"
uv sync --locked
uv run --no-sync pytest -q -p no:cacheprovider "$@"
