# iotc-adx-healer — everything installs from scratch into .venv and node_modules.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test lint typecheck imports unit demo sandbox bench clean

help:
	@echo "make demo     run the self-healing demo on the local sandbox"
	@echo "make test     lint (ruff), type-check (mypy) and run every test"
	@echo "make sandbox  start the local Azure stand-ins and keep them running"
	@echo "make bench    run the benchmarks"
	@echo "make lint     ruff only"
	@echo "make clean    remove .venv, node_modules and local state"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium, for the report's browser test (Playwright drives it; no browser download).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

install: $(VENV)/.installed node_modules/.installed $(CHROMIUM)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# The layers of shared/ and who may import an Azure SDK: the contracts in pyproject.toml.
imports: $(VENV)/.installed
	$(VENV)/bin/lint-imports --no-cache

test: install lint typecheck imports
	$(VENV)/bin/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

demo: install
	$(PY) -m sandbox drill --report .sandbox/drill-report.json

sandbox: install
	$(PY) -m sandbox serve

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .sandbox .bench .reports .mypy_cache .ruff_cache .pytest_cache
