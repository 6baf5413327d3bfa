# redisq developer tasks (GNU make). `make check` is what CI runs (through .ci/run).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt only when pyproject.toml changes (or the venv is missing).
STAMP := $(VENV)/.redisq-installed.stamp
PYTEST_ARGS ?=
# `make chaos`: the chaos scenarios outside the default test run (docs/reliability.md).
SCENARIOS ?= S2 S3 S6 S7 S8 S10 S15 S16 S16C
SEED ?=
CHAOS_ARGS ?=

.DEFAULT_GOAL := check
.PHONY: venv test demo lint check bench bench-peers chaos clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "error: redisq needs Python >= 3.11, but '$(PYTHON)' is $$($(PYTHON) -V 2>&1 || echo missing)." >&2; \
		echo "       Install a newer Python and run e.g. 'make PYTHON=python3.12'." >&2; \
		exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dashboard]' --group dev
	@touch $(STAMP)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/redisq demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/support tests/chaos
	$(BIN)/python tools/gen_sync.py --check

check: lint test

bench: venv
	$(BIN)/python bench/run_all.py

# redisq beside its peers (bench/peers/README.md): long; each peer in its own venv under
# .bench-peers/ (git-ignored). Options: make bench-peers BENCH_PEERS_ARGS="--jobs 5000 --rounds 3"
BENCH_PEERS_ARGS ?=
bench-peers: venv
	$(BIN)/python bench/peers/run.py $(BENCH_PEERS_ARGS)

# Seeded chaos runs; each prints its seed and figures, e.g. `make chaos SCENARIOS=S2 SEED=42`.
chaos: venv
	$(BIN)/python -m tests.chaos $(SCENARIOS) $(if $(SEED),--seed $(SEED)) $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name '*.egg-info' -prune -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
