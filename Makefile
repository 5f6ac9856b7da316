# mtlab's two everyday commands: `make up` starts the stack, `make test` runs every check CI runs.
# Both create .venv and install the project (editable, with dev tools) the first time, or after
# pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: help install up test lint typecheck pytest bench generate clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mtlab needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install mtlab with its dev tools

up: install  ## start the stack: Postgres, Redis and every service, supervised (Ctrl-C stops it)
	$(BIN)/mtlab up

test: lint typecheck pytest  ## everything CI checks: ruff, mypy --strict, the test suite

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest

bench: install  ## print the benchmark figures (crypto, then messages)
	$(BIN)/mtlab bench crypto
	$(BIN)/mtlab bench messages

generate: install  ## regenerate mtproto/tl/{mt,api} from the .tl schemas
	$(BIN)/python -m mtproto.tl.generator

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
