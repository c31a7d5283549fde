# One set of commands for people and CI. Each target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-embedded test-postgres bench clean mutation lock

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Whole service on embedded defaults + the demo scenario; exits non-zero if it fails.
demo: $(STAMP)
	$(VENV)/bin/gpubill demo

## The test suite, on the embedded defaults and on PostgreSQL + Redis.
test: $(STAMP)
	PYTHON=$(PY) scripts/test.sh

test-embedded: $(STAMP)
	GPUBILL_TEST_BACKEND=embedded $(PY) -m pytest

test-postgres: $(STAMP)
	GPUBILL_TEST_BACKEND=postgres $(PY) -m pytest

clean:
	rm -rf var .pytest_cache

## Ledger throughput on SQLite and on PostgreSQL (prints figures).
bench: $(STAMP)
	$(PY) benchmarks/ledger_cycles.py --seconds 10
	$(PY) benchmarks/ledger_cycles.py --postgres --seconds 10
	$(PY) -m benchmarks.webhook_intake
	$(PY) -m benchmarks.job_overhead
	$(PY) -m benchmarks.ledger_growth

## Mutation score of pricing/ and the ledger's money operations (minutes; not in CI).
mutation: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,mutation]'
	PYTHON=$(PY) scripts/mutation.sh

## requirements.lock: the application's dependencies pinned with hashes (pip's resolver).
lock: $(STAMP)
	$(PY) scripts/lock.py
