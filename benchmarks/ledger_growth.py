"""Growth: does reading a wallet stay fast as the ledger grows? Balance read and one
page (50) of entries, p50/p99 over many reads, on a ledger of 10k postings and again
after growing it to 1M postings, on PostgreSQL at 127.0.0.1.

    .venv/bin/python -m benchmarks.ledger_growth [--sizes 10000,1000000] [--reads 2000]

The ledger is grown with ``ledger.operations`` (hold + capture cycles, 2 postings each,
500 cycles per transaction) over
1,000 wallets, one of which (the "heavy" wallet) gets a tenth of all cycles: reads are
measured on random wallets and on the heavy one, the worst case for entries (at 10k
postings a random wallet has only a few entries, so its page is short). After growing,
the tables get ``VACUUM ANALYZE``, as autovacuum does in production: this machine's
PostgreSQL runs with autovacuum off, and without it the planner works blind and every
wallet update leaves a dead row version behind.
"""
from __future__ import annotations

import argparse
import random
import time
from datetime import timedelta

from sqlalchemy import func, select

from benchmarks.common import machine, percentile, postgres_database
from ledger import operations as ops
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.entries import page
from ledger.models import Posting, Wallet, utcnow

WALLETS = 1000
HEAVY = "growth-heavy"


def postings(factory) -> int:
    with transaction(factory) as s:
        return s.scalar(select(func.count()).select_from(Posting))


def grow(factory, target: int, rng: random.Random) -> None:
    """Add hold + capture cycles until the ledger holds ``target`` postings."""
    users = [f"growth-{i}" for i in range(WALLETS - 1)] + [HEAVY]
    expires = utcnow() + timedelta(days=1)
    n = postings(factory)
    seq = n
    while n < target:
        size = min(500, max(1, (target - n) // 2))
        picks = [HEAVY if rng.random() < 0.1 else rng.choice(users) for _ in range(size)]
        with transaction(factory) as s:
            for j, user in enumerate(picks):
                h = ops.place_hold(s, user_id=user, amount=10, op_key=f"growth:{seq + j}:hold", expires_at=expires)
                ops.capture(s, hold_id=h.hold_id, amount=7, op_key=f"growth:{seq + j}:capture")
        seq += size
        n += 2 * size


def measure(factory, reads: int, rng: random.Random) -> dict[str, tuple[float, float]]:
    """p50/p99 in ms of each read kind."""
    out: dict[str, list[float]] = {"balance (random wallet)": [], "entries page (random wallet)": [],
                                   "balance (heavy wallet)": [], "entries page (heavy wallet)": []}
    for _ in range(reads):
        u = f"growth-{rng.randrange(WALLETS - 1)}"
        for label, user in (("random wallet", u), ("heavy wallet", HEAVY)):
            with transaction(factory) as s:
                t = time.perf_counter()
                s.scalars(select(Wallet).where(Wallet.user_id == user)).one()
                out[f"balance ({label})"].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                page(s, user, limit=50)
                out[f"entries page ({label})"].append((time.perf_counter() - t) * 1000)
    return {k: (percentile(sorted(v), 50), percentile(sorted(v), 99)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,1000000", help="ledger sizes in postings")
    ap.add_argument("--reads", type=int, default=2000)
    args = ap.parse_args()
    print(f"machine: {machine()}; PostgreSQL at 127.0.0.1")
    rng = random.Random(7)
    with postgres_database() as url:
        factory = make_sessionmaker(make_engine(url))
        with transaction(factory) as s:
            for i in range(WALLETS - 1):
                ops.credit_topup(s, user_id=f"growth-{i}", amount=10**9, op_key=f"growth:topup:{i}")
            ops.credit_topup(s, user_id=HEAVY, amount=10**12, op_key="growth:topup:heavy")
        results = {}
        for size in (int(x) for x in args.sizes.split(",")):
            started = time.monotonic()
            grow(factory, size, rng)
            with factory.kw["bind"].execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
            n = postings(factory)
            print(f"ledger grown to {n:,} postings in {time.monotonic() - started:.0f} s")
            results[n] = measure(factory, args.reads, rng)
            for kind, (p50, p99) in results[n].items():
                print(f"  {kind:<30} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        if len(results) >= 2:
            small, big = min(results), max(results)
            for kind in results[big]:
                ratio = results[big][kind][1] / results[small][kind][1]
                print(f"p99 {kind}: {results[small][kind][1]:.2f} ms at {small:,} → "
                      f"{results[big][kind][1]:.2f} ms at {big:,} ({ratio:.2f}×)")
        factory.kw["bind"].dispose()


if __name__ == "__main__":
    main()
