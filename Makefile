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

# The example app's steps run on their image's environment (scikit-learn 1.2-1), which the first
# `make run` builds with uv into ~/.cache/sagepipe; the example extra serves the benchmarks'
# in-process baselines and tests that compare with the host.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[example]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,example]'
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

# bubblewrap runs each step in a fresh root with its own namespaces; without it sagepipe falls
# back to the process sandbox (and says so). slirp4netns gives steps without network isolation
# the outside but not this machine's loopback services.
bwrap:
	@if ! command -v bwrap >/dev/null 2>&1 || ! command -v slirp4netns >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap and slirp4netns"; \
	    (apt-get install -y -qq bubblewrap slirp4netns >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap slirp4netns >/dev/null 2>&1)) || \
	     echo "warning: could not install bubblewrap and slirp4netns; see sagepipe doctor"; \
	  else \
	    echo "warning: bubblewrap or slirp4netns is missing (apt-get install bubblewrap slirp4netns); see sagepipe doctor"; \
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
	$(BIN)/mypy src bench app/sagemaker_pipeline.py

contracts: dev
	$(BIN)/lint-imports

pytest: dev bwrap
	$(BIN)/pytest -q

test: lint typecheck contracts pytest

bench: dev bwrap
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .sagepipe .mypy_cache .ruff_cache .pytest_cache
