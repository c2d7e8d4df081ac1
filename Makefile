# sagepipe: `make run` runs the example pipeline locally; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SAGEPIPE := $(BIN)/sagepipe
BUCKET ?= sagepipe-local
DATA_URI := s3://$(BUCKET)/other/data/raw/penguins.csv

.PHONY: run test lint typecheck contracts pytest bwrap venv dev seed bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The example app's steps run on the step interpreter (by default this venv's Python), so the
# example's libraries are installed next to sagepipe; sagepipe itself does not need them.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[example]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,example]'
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

# bubblewrap gives each step its own mount namespace; without it sagepipe falls back to the
# process sandbox (and says so).
bwrap:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap"; \
	    (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1)) || \
	     echo "warning: could not install bubblewrap; steps will use the process sandbox"; \
	  else \
	    echo "warning: bubblewrap is missing (apt-get install bubblewrap); steps will use the process sandbox"; \
	  fi; \
	fi

seed: venv
	@$(SAGEPIPE) bucket put data/penguins.csv $(DATA_URI) --if-missing

run: bwrap venv seed
	$(SAGEPIPE) run app/sagemaker_pipeline.py

lint: dev
	$(BIN)/ruff check src tests app bench
	$(BIN)/ruff format --check src tests app bench

typecheck: dev
	$(BIN)/mypy src

contracts: dev
	$(BIN)/lint-imports

pytest: dev bwrap
	$(BIN)/pytest -q

test: lint typecheck contracts pytest

bench: dev bwrap
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .sagepipe .mypy_cache .ruff_cache .pytest_cache
