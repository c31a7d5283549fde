"""Ledger throughput: hold + capture cycles per second over many wallets and on one hot
wallet, from worker processes with one connection each, as the worker runs them (one DB
transaction per operation). On PostgreSQL, ``benchmarks/ledger_vs_pgledger.py`` measures the
same path against a bare ``UPDATE`` ceiling and, optionally, pgledger.

    .venv/bin/python benchmarks/ledger_cycles.py                      # SQLite (embedded)
    .venv/bin/python benchmarks/ledger_cycles.py --postgres           # 127.0.0.1:5432

Prints the machine, the figures, and checks no wallet was overdrawn.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import secrets
import tempfile
import time
from datetime import timedelta

from sqlalchemy import create_engine, func, select, text

from ledger import operations as ops
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.invariants import check
from ledger.migrate import upgrade
from ledger.models import Wallet, utcnow

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def fresh_database(postgres: bool) -> tuple[str, callable]:
    if not postgres:
        path = os.path.join(tempfile.mkdtemp(), "bench.db")
        return f"sqlite:///{path}", lambda: None
    name = f"gpubill_bench_{secrets.token_hex(3)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, drop


def _worker(url: str, users: list[str], t: int, seconds: float, label: str,
            ready: mp.synchronize.Barrier, out: mp.Queue[float]) -> None:
    """One worker process with its own connection, like a Celery prefork child; puts
    its cycles per second on ``out``."""
    factory = make_sessionmaker(make_engine(url, pool_size=1, max_overflow=0)
                                if not url.startswith("sqlite") else make_engine(url))
    with factory() as s:  # connect before the clock starts
        s.connection()
    i, wallets = 0, len(users)
    ready.wait()
    started = time.monotonic()
    stop = started + seconds
    expires = utcnow() + timedelta(hours=1)
    while time.monotonic() < stop:  # the service's path: one operation per transaction
        u = users[(t * 7919 + i) % wallets]
        key = f"bench:{label}:1:{t}:{i}"
        with transaction(factory) as s:
            h = ops.place_hold(s, user_id=u, amount=10, op_key=key + ":hold", expires_at=expires)
        with transaction(factory) as s:
            ops.capture(s, hold_id=h.hold_id, amount=7, op_key=key + ":capture")
        i += 1
    out.put(i / (time.monotonic() - started))


def run(url: str, wallets: int, workers: int, seconds: float, label: str) -> None:
    factory = make_sessionmaker(make_engine(url))
    users = [f"{label}-{i}" for i in range(wallets)]
    with transaction(factory) as s:
        for u in users:
            ops.credit_topup(s, user_id=u, amount=10**9, op_key=f"bench:topup:{label}:{u}")
    out: mp.Queue[float] = mp.Queue()
    ready = mp.Barrier(workers)
    procs = [mp.Process(target=_worker, args=(url, users, t, seconds, label, ready, out))
             for t in range(workers)]
    for p in procs:
        p.start()
    rate = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    with transaction(factory) as s:
        negative = s.scalar(select(func.count()).select_from(Wallet).where(Wallet.balance - Wallet.held < 0))
        violations = check(s)
    mode = "one op per transaction"
    print(f"  {label:<6} {wallets:>6} wallets, {workers} connections, {mode:<22}: {rate:8.0f} cycles/s "
          f"({2 * rate:.0f} money ops/s), overdrawn wallets {negative}, "
          f"invariant violations {len(violations)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--wallets", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=8, help="worker processes, one connection each")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    url, drop = fresh_database(args.postgres)
    try:
        upgrade(url)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"database: {'PostgreSQL' if args.postgres else 'SQLite (WAL)'}")
        run(url, args.wallets, args.workers, args.seconds, "spread")
        run(url, 1, args.workers, args.seconds, "hot")
    finally:
        drop()


if __name__ == "__main__":
    main()
