# The two set-up commands of the README: `make run` (the main job) and `make test` (the suite).
# Both create .venv and install cifarlab with the exact pins of constraints.txt on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(wildcard ../shared/data/cifar10)
PYTEST_ARGS ?=

.PHONY: install run test test-slow lint bench-baseline

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## Train the Keras baseline for 2 epochs on CIFAR-10 (DATA=path, else $$CIFARLAB_DATA, else download),
## analyze it, explain a sample and write RUN_DIR/report.html.
run: install
	$(VENV)/bin/cifarlab run $(if $(DATA),--data $(DATA))

## System packages first (PostgreSQL and Chromium for their tests; skipped with a note where they cannot install).
test: install
	bash scripts/install-system-deps.sh
	$(PY) -m pytest $(PYTEST_ARGS)

## The few tests that need the real CIFAR-10 images (../shared/data/cifar10) or minutes of CPU.
test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench-baseline: install
	$(PY) benchmarks/bench_baseline.py $(if $(DATA),--data $(DATA))
