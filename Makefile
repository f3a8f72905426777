# The two set-up commands of the README: `make run` (the main job) and `make test` (the suite).
# Both create .venv and install cifarlab with the exact pins of constraints.txt on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(wildcard ../shared/data/cifar10)
PYTEST_ARGS ?=
# Where torch and torchvision come from. Without an NVIDIA GPU: PyTorch's CPU-only build, which leaves out
# the default wheel's CUDA libraries and triton (4 GB: the install is about 2.3 GB instead of 6.7 GB). When
# that index cannot be reached (offline, a firewall), the default wheel installs instead, within seconds.
# TORCH_INDEX= (empty) always takes the default wheel; TORCH_INDEX=https://download.pytorch.org/whl/cu126
# picks a CUDA build. An existing venv keeps the torch it has: remove it to switch.
TORCH_INDEX ?= $(if $(shell nvidia-smi -L 2>/dev/null),,https://download.pytorch.org/whl/cpu)

.PHONY: install run test test-slow lint bench-baseline docs

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	if [ -n "$(TORCH_INDEX)" ]; then \
	    $(PY) -m pip install --quiet --no-deps --timeout 10 --retries 0 --index-url "$(TORCH_INDEX)" \
	        -c constraints.txt torch torchvision 2>/dev/null \
	    || echo "make: no torch build from $(TORCH_INDEX) (offline?): installing the default wheel instead"; \
	fi
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

## The documentation site (mkdocs, Material theme) into site/; `.venv/bin/mkdocs serve` previews it live.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
