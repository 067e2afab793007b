# Spotter — every target creates .venv at the repo root and installs what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip --disable-pip-version-check --quiet

.PHONY: demo test check lint types template bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The control plane, the local stack and the test tools.
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	touch $@

# The demo's training environment: what a GPU image carries (torch, ultralytics), installed once.
$(VENV)/.demo: pyproject.toml $(VENV)/.dev
	$(PIP) install -e '.[dev,demo]'
	touch $@

demo: $(VENV)/.demo
	$(BIN)/python -m infra.local demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -n 4 --dist worksteal

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.dev
	$(BIN)/mypy

template: $(VENV)/.dev
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m infra.sam check template.yaml

check: lint types template test

bench: $(VENV)/.dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
