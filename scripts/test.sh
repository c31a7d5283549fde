#!/usr/bin/env bash
# Runs the suite on the embedded defaults (SQLite + embedded broker), then on PostgreSQL +
# Redis at 127.0.0.1. The second run deselects the tests that do not depend on the backend
# (pricing, emulators, docs, the demo...; tests/backend_scope.py): they ran on the first.
# Under CI=true a missing PostgreSQL or Redis fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
status=0
echo "=== backend: embedded (every test)"
GPUBILL_TEST_BACKEND=embedded "$PY" -m pytest --durations=20 "$@" || status=1
echo "=== backend: postgres (the tests that depend on the backend)"
GPUBILL_TEST_BACKEND=postgres "$PY" -m pytest --durations=20 --backend-dependent-only "$@"
rc=$?
# 5: every selected test was backend-independent (e.g. `scripts/test.sh tests/pricing`).
[ $rc -eq 0 ] || [ $rc -eq 5 ] || status=1
exit $status
