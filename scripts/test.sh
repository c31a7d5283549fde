#!/usr/bin/env bash
# Runs the whole suite twice: on the embedded defaults (SQLite + embedded broker) and on
# PostgreSQL + Redis at 127.0.0.1. Under CI=true a missing PostgreSQL or Redis fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
status=0
for backend in embedded postgres; do
  echo "=== backend: $backend"
  GPUBILL_TEST_BACKEND=$backend "$PY" -m pytest --durations=20 "$@" || status=1
done
exit $status
