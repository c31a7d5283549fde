"""The production money path against its ceilings, on PostgreSQL, one command:

    .venv/bin/python benchmarks/ledger_vs_pgledger.py [--pgledger DIR] [--runs 3] [--seconds 10]

Per case (8 connections over 10k wallets; 8 connections on one hot wallet; one
connection on the hot wallet; group commit of ``--batch`` operations per transaction)
it measures, in the same run and on the same server:

* **gpubill**: ``ledger.operations.place_hold`` then ``capture``, each in its own DB
  transaction through ``ledger.db`` (pool, session, engine settings as the workers use
  them) — money ops/s, two per cycle. The group-commit case runs ``--batch`` holds (then
  as many captures) in one transaction with a SAVEPOINT around each operation, which is
  what buffering worker tasks into one transaction would execute (docs/performance.md).
* **ceiling**: a bare ``UPDATE wallets … RETURNING`` committing by itself (psycopg,
  autocommit: one round trip, no pool, no ORM) on the same wallets — statements/s.
* **pgledger** (only with ``--pgledger DIR`` or ``GPUBILL_PGLEDGER_SQL``): its SQL, read
  from that checkout at run time into a fresh database (never vendored here), then
  ``select id from pgledger_create_transfer($1, $2, $3)`` per transfer as its own
  ``go/performance_check.go`` calls it; the group-commit case calls
  ``pgledger_create_transfers`` with ``--batch`` transfers. Spread: random account to
  random account of 10k; hot: the hot account to a random one of the others.

Prints the machine, the load average, medians of ``--runs`` runs per figure, and the
targets of issue 17: ≥ 2× pgledger's rate and ≥ 0.5× the ceiling in every case.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg

# The code measured: this checkout, or (gpubill@baseline children) the one named by
# GPUBILL_BENCH_CODE.
sys.path.insert(0, os.environ.get("GPUBILL_BENCH_CODE") or str(Path(__file__).resolve().parent.parent))
from benchmarks.ledger_cycles import fresh_database
from ledger import operations as ops
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.migrate import upgrade
from ledger.models import utcnow

# (label, wallets, connections, operations per transaction)
CASES = [("spread", 10_000, 8, 1), ("hot", 1, 8, 1), ("hot-1conn", 1, 1, 1), ("group", 10_000, 8, 100)]
PGLEDGER_FILES = ["vendor/scoville-pgsql-ulid/ulid-to-uuid.sql",
                  "vendor/scoville-pgsql-ulid/uuid-to-ulid.sql", "pgledger.sql"]


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# -- one loop per side; each returns operations done ----------------------------------
def gpubill_loop(url: str, case: tuple, t: int, go: Callable[[], Callable[[], bool]]) -> int:
    label, wallets, _, per_tx = case
    factory = make_sessionmaker(make_engine(url, pool_size=1, max_overflow=0))
    with factory() as s:
        s.connection()
    deadline = go()
    expires, rng, done, pid = utcnow() + timedelta(hours=1), random.Random(t), 0, os.getpid()
    while not deadline():
        keys = [f"b:{label}:{pid}:{t}:{done + j}" for j in range(per_tx)]
        # Wallets in one order in every transaction, as a group commit must lock them
        # (else two groups deadlock).
        users = sorted(f"w{rng.randrange(wallets)}" for _ in keys)
        with transaction(factory) as s:
            holds = [_in_savepoint(s, per_tx, lambda u=u, k=k: ops.place_hold(
                s, user_id=u, amount=10, op_key=k + ":hold", expires_at=expires))
                for u, k in zip(users, keys, strict=True)]
        with transaction(factory) as s:
            for h, k in zip(holds, keys, strict=True):
                _in_savepoint(s, per_tx, lambda h=h, k=k: ops.capture(
                    s, hold_id=h.hold_id, amount=7, op_key=k + ":capture"))
        done += 2 * per_tx
    return done


def _in_savepoint(s, per_tx: int, fn: Callable[[], object]) -> object:
    if per_tx == 1:
        return fn()
    with s.begin_nested():
        return fn()


def ceiling_loop(url: str, case: tuple, t: int, go: Callable[[], Callable[[], bool]]) -> int:
    _, wallets, _, _ = case
    rng, done = random.Random(t), 0
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        deadline = go()
        while not deadline():
            conn.execute("UPDATE wallets SET held = held + 0, updated_at = now() WHERE user_id = %s "
                         "RETURNING held", (f"w{rng.randrange(wallets)}",)).fetchone()
            done += 1
    return done


def pgledger_loop(url: str, case: tuple, t: int, go: Callable[[], Callable[[], bool]]) -> int:
    _, wallets, _, per_tx = case
    rng, done = random.Random(t), 0
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM pgledger_accounts WHERE name LIKE 'w%%' ORDER BY name")]
        hot = ids[0]

        def pair() -> tuple[str, str]:
            if wallets == 1:
                return hot, ids[1 + rng.randrange(len(ids) - 1)]
            a, b = rng.sample(ids, 2)
            return a, b
        deadline = go()
        while not deadline():
            if per_tx == 1:
                conn.execute("select id from pgledger_create_transfer(%s, %s, %s)", (*pair(), 1)).fetchall()
            else:
                reqs = [(*pair(), 1) for _ in range(per_tx)]
                conn.execute("select id from pgledger_create_transfers(%s::transfer_request[])",
                             ([f"({a},{b},{n})" for a, b, n in reqs],)).fetchall()
            done += per_tx
    return done


LOOPS = {"gpubill": gpubill_loop, "ceiling": ceiling_loop, "pgledger": pgledger_loop}


def child(side: str, url: str, case_label: str, t: int, seconds: float, start_at: float) -> None:
    """One connection of ``side`` (run as ``--child``): set up, wait for the common start
    (wall clock), run ``seconds``, print its operations per second."""
    case = next(c for c in CASES if c[0] == case_label)
    started: list[float] = []

    def go() -> Callable[[], bool]:
        time.sleep(max(0.0, start_at - time.time()))  # all connections start together
        started.append(time.monotonic())
        return lambda: time.monotonic() >= started[0] + seconds
    done = LOOPS[side.removesuffix("@baseline")](url, case, t, go)
    print(done / (time.monotonic() - started[0]))


def measure(side: str, url: str, case: tuple, seconds: float, baseline: Path | None) -> float:
    """Operations per second of ``side`` on ``case``, summed over its connections (one
    process each, like Celery prefork children). ``gpubill@baseline`` runs the gpubill
    loop on the code of another checkout of gpubill (PYTHONPATH), in the same run."""
    env = dict(os.environ)
    if side.endswith("@baseline") and baseline is not None:
        env["GPUBILL_BENCH_CODE"] = str(baseline)
    start_at = time.time() + 2 + 0.3 * case[2]  # after every child has connected
    procs = [subprocess.Popen([sys.executable, __file__, "--child", side, url, case[0], str(t), str(seconds),
                               str(start_at)], env=env, stdout=subprocess.PIPE, text=True)
             for t in range(case[2])]
    rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"{side} on {case[0]}: a child failed")
    return sum(rates)


# -- databases --------------------------------------------------------------------------
def gpubill_db(wallets: int) -> tuple[str, Callable[[], None]]:
    url, drop = fresh_database(True)
    upgrade(url)
    factory = make_sessionmaker(make_engine(url))
    with transaction(factory) as s:
        for i in range(wallets):
            ops.credit_topup(s, user_id=f"w{i}", amount=10**12, op_key=f"bench:topup:w{i}")
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url, drop


def pgledger_db(checkout: Path, wallets: int) -> tuple[str, Callable[[], None]]:
    url, drop = fresh_database(True)
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        for name in PGLEDGER_FILES:  # read at run time from the caller's checkout
            conn.execute((checkout / name).read_text())
        conn.execute("SELECT pgledger_create_account('w' || lpad(g::text, 6, '0'), 'USD') "
                     "FROM generate_series(0, %s) g", (wallets,))
        conn.execute("VACUUM ANALYZE")
    return url, drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pgledger", type=Path, default=os.environ.get("GPUBILL_PGLEDGER_SQL"),
                    help="a checkout of github.com/pgr0ss/pgledger (its pgledger.sql is loaded at run time)")
    ap.add_argument("--baseline", type=Path,
                    help="another gpubill checkout (e.g. `git worktree add /tmp/base main`): its money path "
                         "is measured too, interleaved with this one, on the same database")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3, help="median of this many runs per figure")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        side, url, label, t, seconds, start_at = args.child
        return child(side, url, label, int(t), float(seconds), float(start_at))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or '?'}, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at start")
    dbs = {"gpubill": gpubill_db(10_000)}
    if args.baseline:
        dbs["gpubill@baseline"] = dbs["gpubill"]
    dbs["ceiling"] = dbs["gpubill"]
    if args.pgledger:
        dbs["pgledger"] = pgledger_db(Path(args.pgledger), 10_000)
    else:
        print("pgledger: not measured (pass --pgledger DIR or set GPUBILL_PGLEDGER_SQL)")
    try:
        with psycopg.connect(_libpq(dbs["gpubill"][0])) as conn:
            print(f"database: {conn.execute('select version()').fetchone()[0].split(' on ')[0]}")
        for case in CASES:
            runs: dict[str, list[float]] = {side: [] for side in dbs if not (side == "ceiling" and case[3] > 1)}
            for _ in range(args.runs):  # interleaved: load that drifts hits every side alike
                for side in runs:
                    runs[side].append(measure(side, dbs[side][0], case, args.seconds, args.baseline))
            report(case, {side: statistics.median(r) for side, r in runs.items()}, os.getloadavg()[0])
        with transaction(make_sessionmaker(make_engine(dbs["gpubill"][0]))) as s:
            print(f"gpubill invariant violations after all runs: {len(check(s))}")
    finally:
        for _url, drop in {v[0]: v for v in dbs.values()}.values():
            drop()
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def report(case: tuple, f: dict[str, float], load: float) -> None:
    label, wallets, conns, per_tx = case
    line = f"{label:<9} {wallets:>6} wallets, {conns} conn, {per_tx:>3} op/tx: gpubill {f['gpubill']:6.0f} ops/s"
    if "gpubill@baseline" in f:
        line += f" (baseline {f['gpubill@baseline']:6.0f}, {f['gpubill'] / f['gpubill@baseline']:.2f}×)"
    if "ceiling" in f:
        ratio = f["gpubill"] / f["ceiling"]
        line += f" | ceiling {f['ceiling']:6.0f} ({ratio:.2f}×, target ≥ 0.5 {'met' if ratio >= .5 else 'MISSED'})"
    if "pgledger" in f:
        ratio = f["gpubill"] / f["pgledger"]
        line += f" | pgledger {f['pgledger']:6.0f} ({ratio:.2f}×, target ≥ 2 {'met' if ratio >= 2 else 'MISSED'})"
    print(f"{line} | load {load:.1f}", flush=True)


if __name__ == "__main__":
    main()
