# The two commands a new user needs: `make run` and `make test`. Both set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup chromium test lint unit run web bench bench-smoke chaos clean

setup: $(PY_STAMP) $(NODE_STAMP) chromium

$(PY_STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser tests' Chromium: Debian's packages, installed only when missing and only as
# root (or with passwordless sudo; never a password prompt). Elsewhere a Chrome or Chromium
# on PATH does, and without one the browser tests skip and say why (never under CI=true).
CHROME_ON_PATH := $(firstword $(foreach b,chromium chromium-browser google-chrome google-chrome-stable chrome,$(shell command -v $(b) 2>/dev/null)))
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
chromium:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver (browser tests)"; \
		apt-get update -qq && $(APT_INSTALL); \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		echo "installing chromium and chromium-driver with sudo (browser tests)"; \
		sudo -n apt-get update -qq && sudo -n env $(APT_INSTALL); \
	elif [ -n "$(CHROME_ON_PATH)" ]; then :; \
	else echo "note: no Chromium or Chrome, and no root to install Debian's chromium: the" \
		"browser tests will skip (run make setup as root, or install Chrome)"; fi

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy shared function_app.py localdev
	node_modules/.bin/tsc -p examples/web

unit: setup
	$(PY) -m pytest -q tests/unit

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

run: setup
	$(PY) -m localdev.stack

# The web sample as static files in examples/web/dist (add a config.json to host it).
web: setup
	node examples/web/build.mjs

bench: setup
	$(PY) -m bench

bench-smoke: setup
	$(PY) -m bench --smoke

# make chaos CHAOS_ARGS='--scenario storage' (or slow-acs): issue 16's fault trial.
chaos: setup
	$(PY) -m localdev.chaos --minutes 3 $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) node_modules .localdev .pytest_cache .mypy_cache .ruff_cache
