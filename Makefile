# Two commands set everything up on a fresh machine: `make up` (whole system + demo data), `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)

.PHONY: venv up test lint bench schema snapshots

venv: .venv/.synced dashboards/node_modules/.installed

# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set no process does
# either, so every Dagster run worker compiled dagster from source on start (~2 s of its ~4 s, issue 16)
.venv/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	$(UV) sync --frozen --extra dev --compile-bytecode
	@touch $@

# plotly.js "basic" for the dashboard (1.2 MB, fast first chart); without npm it serves the wheel's full bundle
dashboards/node_modules/.installed: dashboards/package.json dashboards/package-lock.json
	@if command -v npm >/dev/null 2>&1 && npm ci --prefix dashboards --no-audit --no-fund --loglevel=error; then \
	  touch $@; else echo "npm missing or failed: the dashboard serves the full plotly.js of the plotly wheel"; fi

up: venv
	.venv/bin/pulseops up --demo

test: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/python -m pytest

bench: venv
	.venv/bin/python -m benchmarks --size small --out $${BENCH_OUT:-/tmp/pulseops-bench}

# Rewrite api/graphql/schema.graphql after a GraphQL change (tests/api/test_graphql_schema.py asks for it)
schema: venv
	.venv/bin/python -m api.graphql.snapshot

# Rewrite both committed snapshots: the GraphQL schema and the Dagster definitions (orchestration/snapshot.py)
snapshots: schema
	.venv/bin/python -m orchestration.snapshot
