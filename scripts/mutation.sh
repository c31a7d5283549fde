#!/usr/bin/env bash
# Mutation testing of the money core with mutmut (config: [tool.mutmut] in pyproject.toml):
# pricing/ and the ledger's money operations, invariants and top-up shares, against the
# tests that need no running stack (SQLite). Prints `mutation score NN.N %` — killed
# mutants over all mutants, a mutant no selected test reaches counting as survived —
# and every mutant that was not killed. Not in CI (minutes); `make mutation`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MUTMUT="$(dirname "$PY")/mutmut"
LOG=${MUTATION_LOG:-${TMPDIR:-/tmp}/gpubill-mutmut.log}
rm -rf mutants
GPUBILL_TEST_BACKEND=embedded "$MUTMUT" run --max-children "${MUTATION_CHILDREN:-2}" >"$LOG" 2>&1 || true
"$MUTMUT" results --all true 2>/dev/null | "$PY" -c '
import collections, sys
rows = [line.strip().rsplit(": ", 1) for line in sys.stdin if ": " in line]
counts = collections.Counter(status for _, status in rows)
total = sum(counts.values())
killed = counts.get("killed", 0) + counts.get("timeout", 0)
for name, status in rows:
    if status not in ("killed", "timeout"):
        print(f"{status:>10}  {name}")
print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
print(f"mutation score {100 * killed / total if total else 0:.1f} %")
if not total or counts.get("not checked", 0) == total:
    sys.exit("mutmut checked nothing: its clean test run failed (see '"$LOG"')")
'
