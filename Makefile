# One-liners over uv. `make install` once, then any target.
.PHONY: install lint format typecheck test ci bench docs serve

install:
	uv sync --locked

lint:
	uv run ruff check . && uv run ruff format --check .

format:
	uv run ruff format . && uv run ruff check --fix .

typecheck:
	scripts/typecheck

test:
	uv run pytest

ci:
	bash .ci/run

bench:
	uv run python benchmarks/run_all.py

docs:
	uv run mkdocs build --strict

serve:
	uv run modalkit serve examples/sentiment/app.py
