# One set of commands for people and CI. Each target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
.DEFAULT_GOAL := help

.PHONY: help install demo test test-embedded test-postgres bench clean mutation lock lint

## This list: each target with the `## ` line above it.
help:
	@awk '/^## /{doc=substr($$0, 4); next} /^[a-z][a-z-]*:/{if (doc) {sub(/:.*/, ""); printf "  %-14s %s\n", $$0, doc}} {doc=""}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## The virtualenv in .venv with the package editable and the test extras.
install: $(STAMP)

## Whole service on embedded defaults + the demo scenario; exits non-zero if it fails.
demo: $(STAMP)
	$(VENV)/bin/gpubill demo

## The test suite, on the embedded defaults and on PostgreSQL + Redis.
test: $(STAMP)
	PYTHON=$(PY) scripts/test.sh

## The test suite on SQLite + the embedded broker only.
test-embedded: $(STAMP)
	GPUBILL_TEST_BACKEND=embedded $(PY) -m pytest

## The test suite on PostgreSQL + Redis only.
test-postgres: $(STAMP)
	GPUBILL_TEST_BACKEND=postgres $(PY) -m pytest

## Remove run data (var/) and pytest's cache.
clean:
	rm -rf var .pytest_cache

## Ledger throughput, intake, job overhead, ledger growth, pipeline, memory (prints figures).
bench: $(STAMP)
	$(PY) benchmarks/ledger_cycles.py --seconds 10
	$(PY) benchmarks/ledger_cycles.py --postgres --seconds 10
	$(PY) benchmarks/ledger_vs_pgledger.py --seconds 10
	$(PY) -m benchmarks.webhook_intake
	$(PY) -m benchmarks.job_overhead
	$(PY) -m benchmarks.ledger_growth
	$(PY) -m benchmarks.pipeline --jobs 200 --paced 50
	$(PY) -m benchmarks.memory --jobs 100

## Mutation score of pricing/ and the ledger's money operations (minutes; not in CI).
mutation: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,mutation]'
	PYTHON=$(PY) scripts/mutation.sh

## requirements.lock: the application's dependencies pinned with hashes (pip's resolver).
lock: $(STAMP)
	$(PY) scripts/lock.py

## ruff check (rules in pyproject.toml), mypy (strict on the money core and services), the layering contract (lint-imports).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
