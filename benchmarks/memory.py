"""The whole stack's memory and idle CPU, for both worker topologies.

    .venv/bin/python -m benchmarks.memory [--jobs 150] [--idle-s 30] [--settle-s 5]

For ``--workers single`` and the per-queue topology (``gpubill up``'s default), the
stack ``gpubill up`` starts (receiver, Celery workers, beat, Flower, the RunPod and
Stripe stand-ins) runs on PostgreSQL + Redis at 127.0.0.1 (those two servers are not
counted). Measured, summed over every process of each service (``benchmarks.procstat``:
PSS from ``/proc/PID/smaps_rollup`` when readable — shared pages of forked processes
counted once —, else RSS, printed):

- idle: ``--settle-s`` after every service is ready;
- idle CPU: utime + stime of every process over ``--idle-s`` seconds, as % of one core
  (beat's schedule: silent-job poll 5 s, outbox sweep 10 s, expiry sweep 30 s);
- peak under load: ``--jobs`` jobs through the pipeline (``benchmarks.load``), sampled
  every 0.25 s.

Targets apply to gpubill's own services (receiver, workers, beat, Flower); the
stand-ins are test doubles, shown apart. Load averages are printed at start and end.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from benchmarks import load as driver
from benchmarks.common import machine, running_stack
from benchmarks.procstat import CpuMeter, PeakSampler, loadavg, memory_kind, stack_groups, stack_memory_mib
from gpubill.broker import free_port

STAND_INS = ("runpod-emulator", "stripe-emulator")
LIMIT_MIB = {"single": 600, "per_queue": 1.2 * 1024}
IDLE_CPU_PCT = 2.0


def split(by_service: dict[str, float]) -> tuple[float, float]:
    """(gpubill services, stand-ins) totals of a ``{service: value}``."""
    ours = sum(v for k, v in by_service.items() if k not in STAND_INS)
    return ours, sum(v for k, v in by_service.items() if k in STAND_INS)


def fmt(by_service: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_service.items(), key=lambda kv: -kv[1]))


def measure(workers: str, args: argparse.Namespace, kind: str) -> dict[str, float]:
    """One topology: idle memory, idle CPU, peak memory under load (printed)."""
    with tempfile.TemporaryDirectory() as tmp, driver.TimedSink() as sink, \
            running_stack(Path(tmp), workers=workers, flower=True, GPUBILL_NOTIFY_URL=sink.url,
                          GPUBILL_FLOWER_PORT=str(free_port()),
                          GPUBILL_RATE_LIMIT_API="1000000/minute") as stack:
        groups = stack_groups(stack)
        time.sleep(args.settle_s)  # let start-up work (imports, first beat ticks) finish
        idle = stack_memory_mib(groups, kind)
        cpu = CpuMeter(groups).start()
        t0 = time.monotonic()
        time.sleep(args.idle_s)
        used = cpu.stop()
        pct = {k: v / ((time.monotonic() - t0) * 1000) * 100 for k, v in used.items()}
        with PeakSampler(groups, kind) as peak:
            users = driver.fund(stack, args.jobs)
            load = driver.submit(stack, users, args.jobs, 8, rate=None)
            driver.wait_notified(sink, list(load.accepted), timeout_s=300)
        procs = sum(1 for _ in groups)
    ours_idle, stand_idle = split(idle)
    ours_peak, stand_peak = split(peak.peak_by_service)
    ours_cpu, stand_cpu = split(pct)
    print(f"--workers {workers.replace('_', '-')} ({procs} services):")
    print(f"  idle {kind}: gpubill {ours_idle:.0f} MiB + stand-ins {stand_idle:.0f} MiB  ({fmt(idle)})")
    print(f"  peak {kind} under {len(load.accepted)} jobs: gpubill {ours_peak:.0f} MiB + stand-ins "
          f"{stand_peak:.0f} MiB  ({fmt(peak.peak_by_service)})")
    per = ", ".join(f"{k} {v:.2f}" for k, v in sorted(pct.items(), key=lambda kv: -kv[1]))
    print(f"  idle CPU over {args.idle_s:g} s: gpubill {ours_cpu:.2f} % of one core + stand-ins "
          f"{stand_cpu:.2f} %  ({per})")
    return {"idle": ours_idle, "peak": ours_peak, "cpu": ours_cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=150, help="jobs in the load phase")
    ap.add_argument("--idle-s", type=float, default=30)
    ap.add_argument("--settle-s", type=float, default=5)
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    kind = memory_kind()
    print(f"machine: {machine()}")
    print(f"load average at start: {loadavg()}")
    print(f"memory: {kind} ({'/proc/PID/smaps_rollup' if kind == 'PSS' else 'VmRSS'}), summed per service")
    figures = {w: measure(w, args, kind) for w in ("single", "per_queue")}
    print(f"load average at end: {loadavg()}")
    print("targets (gpubill services, peak under load):")
    for w, fig in figures.items():
        limit = LIMIT_MIB[w]
        ok = fig["peak"] <= limit
        print(f"  [{'PASS' if ok else 'MISS'}] --workers {w.replace('_', '-')} ≤ {limit:.0f} MiB: "
              f"{fig['peak']:.0f} MiB (idle {fig['idle']:.0f})")
        ok = fig["cpu"] <= IDLE_CPU_PCT
        print(f"  [{'PASS' if ok else 'MISS'}] --workers {w.replace('_', '-')} idle CPU ≤ {IDLE_CPU_PCT:g} %: "
              f"{fig['cpu']:.2f} %")


if __name__ == "__main__":
    main()
