# The two commands: `make run` starts the dashboard, `make test` runs every test.
# Both work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run demo test test-full bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

## Start the dashboard on 127.0.0.1:8000 (PATTER_DASH_BIND, PATTER_DASH_TOKEN to change).
run: $(VENV)/.run-deps
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## Same, with the built-in simulated voice runtime feeding calls.
demo: $(VENV)/.run-deps
	PATTER_DASH_DEMO=1 $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## Debian's Chromium (browser tests), nginx (reverse-proxy test), wrk (benchmark smoke tests), espeak-ng + sox
## (the recording tests make real speech) and PostgreSQL (the journal's second engine; tests/pg.py runs a
## throwaway cluster), when missing.
system-deps:
	@command -v chromium >/dev/null && command -v nginx >/dev/null && command -v wrk >/dev/null && \
	  command -v espeak-ng >/dev/null && command -v sox >/dev/null && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium nginx-light wrk espeak-ng sox postgresql >/dev/null)

## Every test (browser tests included), as CI runs it.
test: $(VENV)/.test-deps system-deps
	$(BIN)/python -m pytest

## Full-size soaks and 1,000-client runs (see docs/release-checklist.md).
test-full: $(VENV)/.test-deps system-deps
	PATTER_DASH_FULL=1 $(BIN)/python -m pytest

bench: $(VENV)/.test-deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
