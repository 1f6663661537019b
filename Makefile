# The two commands a new user needs: `make run` and `make test`. Both set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup test lint unit run bench bench-smoke chaos clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy shared function_app.py localdev

unit: setup
	$(PY) -m pytest -q tests/unit

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

run: setup
	$(PY) -m localdev.stack

bench: setup
	$(PY) -m bench

bench-smoke: setup
	$(PY) -m bench --smoke

# make chaos CHAOS_ARGS='--scenario storage' (or slow-acs): issue 16's fault trial.
chaos: setup
	$(PY) -m localdev.chaos --minutes 3 $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) node_modules .localdev .pytest_cache .mypy_cache .ruff_cache
