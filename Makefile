# Two commands do all the set-up on a fresh machine (see README):
#   make quickstart   set up, then run the quickstart recipe on the embedded glyph world
#   make test         set up (system packages too), then ruff (lint and format check) and the test suite
PY ?= python3
VENV ?= .venv
# The CPU build of torch. For a GPU machine see README "Install" (docs/generators.md), e.g.
#   make quickstart TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup quickstart lint test test-quick system-deps

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

system-deps:
	bash scripts/install-system-deps

quickstart: setup
	$(VENV)/bin/imagepref run recipes/quickstart.yaml

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup system-deps lint
	$(VENV)/bin/imagepref label server install
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-quick: setup
	$(VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)
