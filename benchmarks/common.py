"""What every benchmark shares: a fresh PostgreSQL database and Redis index on
127.0.0.1, the whole service started on them, a description of the machine, and
percentiles and peak memory readings."""
from __future__ import annotations

import os
import platform
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from gpubill.launcher import Stack
from ledger.migrate import upgrade

PG_ADMIN = os.environ.get("GPUBILL_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("GPUBILL_BENCH_REDIS", "redis://127.0.0.1:6379")


def machine() -> str:
    """One line: CPU model and count, memory, Python, PostgreSQL server version."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB; Python {platform.python_version()}; "
            f"{platform.system()} {platform.release()}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database; dropped afterwards."""
    name = f"gpubill_bench_{secrets.token_hex(3)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        upgrade(url)
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def redis_index() -> Iterator[str]:
    """A Redis database index nobody else uses, flushed after. Claimed with the key the
    test suite's ``tests.conftest.claim_redis_db`` respects (``gpubill:test-run``): a
    test run started meanwhile on this Redis skips the index instead of deleting its
    keys — the benchmark's queues included — as it did with a key of our own."""
    for index in range(15, 0, -1):
        db = redis.Redis.from_url(f"{REDIS}/{index}")
        if db.set("gpubill:test-run", f"bench-{os.getpid()}", nx=True, ex=3600):
            try:
                yield f"{REDIS}/{index}"
            finally:
                db.flushdb()
            return
    raise RuntimeError("no free Redis database index")


@contextmanager
def running_stack(data_dir: Path, workers: str = "single", flower: bool = False,
                  **env: str) -> Iterator[Stack]:
    """The whole service on PostgreSQL + Redis at 127.0.0.1 (as in production);
    ``workers``: "single" (one Celery worker on all queues) or "per_queue"."""
    with postgres_database() as db_url, redis_index() as broker_url:
        stack = Stack(workers=workers, flower=flower,
                      env={"GPUBILL_ENV": "test", "GPUBILL_DATA_DIR": str(data_dir),
                           "GPUBILL_DATABASE_URL": db_url, "GPUBILL_BROKER_URL": broker_url, **env})
        with stack:
            yield stack


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of process ``pid`` and all its descendants, summed, MiB."""
    pids = [pid]
    out = subprocess.run(["pgrep", "-g", str(os.getpgid(pid))], capture_output=True, text=True)
    pids += [int(p) for p in out.stdout.split() if int(p) != pid]
    total_kib = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        total_kib += next((int(line.split()[1]) for line in status.splitlines()
                           if line.startswith("VmHWM:")), 0)
    return total_kib / 1024
