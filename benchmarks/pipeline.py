"""The whole job pipeline against its framework's ceiling, in one run.

    .venv/bin/python -m benchmarks.pipeline [--jobs 300] [--workers single|per-queue]
                                            [--paced 100 --rate 10] [--coalesce-s S]

On PostgreSQL + Redis at 127.0.0.1 the whole stack runs (receiver under gunicorn,
Celery workers, beat, the RunPod and Stripe stand-ins) with the RunPod stand-in
finishing every job at once (``benchmarks.load``). Wallets are funded through the
Stripe webhook, then:

1. throughput: ``--jobs`` jobs submitted through ``POST /v1/jobs`` as fast as
   ``--clients`` threads go; each goes hold → dispatch (``/run``) → callback →
   ``/status`` → capture → notification POSTed to a sink here. jobs/s sustained is
   jobs notified / (last notification − first submit); CPU-ms per job of each
   stack service from ``/proc/PID/stat`` (utime + stime, all its processes); the
   stack's peak memory (sum over its processes, sampled every 0.25 s; PSS if readable).
2. overhead: ``--paced`` jobs offered at ``--rate``/s (no backlog): p50/p95 of
   202 → ``/run`` received and completion webhook sent → capture committed.
3. ceiling: a bare Celery chain (``benchmarks.ceiling``) with the same number of tasks
   and worker HTTP calls per job, on the same Redis, same pool type and concurrency.

Tasks and HTTP calls per job are both stated from the code and counted in the run
(Celery's "received" log lines of the pipeline's tasks; the stand-in's ``/run`` and
``/status`` counts; the sink's deliveries). Load averages are printed at start and end:
the machine is shared, so compare figures only with their load.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import tempfile
import time
from pathlib import Path

from base import queues
from benchmarks import load as driver
from benchmarks.ceiling import run_ceiling
from benchmarks.common import machine, percentile, running_stack
from benchmarks.procstat import CpuMeter, MachineMeter, PeakSampler, loadavg, memory_kind, stack_groups
from gpubill.launcher import Stack

# jobs.place_hold: counted in case a message from before issue 17 shows up (none should).
PIPELINE_TASKS = (queues.PLACE_HOLD, queues.DISPATCH, queues.REFRESH_STATUS, queues.SEND_NOTIFICATION)
CODE_PATH = ("receiver POST /v1/jobs → jobs.dispatch (hold + dispatch intent in one commit, HTTP /run) → "
             "[stand-in POSTs the callback to the receiver] → gpu_status.refresh (leads the "
             "coalescing window: HTTP /status now, capture) → notify.send (HTTP POST to the app)")


def code_plan() -> list[int]:
    """Worker HTTP calls of each task execution of one job, in order, from the code
    (worker/tasks/jobs.py, gpu_status.py, notify.py; gateways/runpod.py). A lone
    callback leads its coalescing window and reads /status at once, so the window
    (``GPUBILL_RUNPOD_COALESCE_S``) adds no task to a job with one callback."""
    return [1, 1, 1]


def received_tasks(stack: Stack) -> dict[str, int]:
    """Pipeline task deliveries so far, by name, from the workers' logs."""
    pattern = re.compile(r"Task ([\w.]+)\[[0-9a-f-]+\] received")
    counts = dict.fromkeys(PIPELINE_TASKS, 0)
    for log in stack.log_dir.glob("worker*.log"):
        for name in pattern.findall(log.read_text(errors="replace")):
            if name in counts:
                counts[name] += 1
    return counts


def task_runtimes(stack: Stack) -> dict[str, tuple[int, float]]:
    """Pipeline task runs so far: name → (count, mean wall ms), from Celery's
    "succeeded in Ns" / "retry" lines in the workers' logs (a retry's time is not logged)."""
    pattern = re.compile(r"Task ([\w.]+)\[[0-9a-f-]+\] succeeded in ([0-9.e-]+)s")
    runs: dict[str, list[float]] = {name: [] for name in PIPELINE_TASKS}
    for log in stack.log_dir.glob("worker*.log"):
        for name, secs in pattern.findall(log.read_text(errors="replace")):
            if name in runs:
                runs[name].append(float(secs) * 1000)
    return {k: (len(v), sum(v) / len(v) if v else float("nan")) for k, v in runs.items()}


def target(name: str, ok: bool, figure: str) -> str:
    return f"  [{'PASS' if ok else 'MISS'}] {name}: {figure}"


def throughput(stack: Stack, sink: driver.TimedSink, users: list[str], args: argparse.Namespace) -> dict:
    """Phase 1: the backlog run. Returns the figures printed and checked."""
    groups = stack_groups(stack)
    kind = memory_kind()
    before = received_tasks(stack)
    cpu = CpuMeter(groups).start()
    whole = MachineMeter().start()
    with PeakSampler(groups, kind) as peak:
        load = driver.submit(stack, users, args.jobs, args.clients, rate=None)
        ok = driver.wait_notified(sink, list(load.accepted), timeout_s=600)
    used = cpu.stop()
    on_machine = whole.stop()
    after = received_tasks(stack)
    ids = list(load.accepted)
    with sink._lock:
        done = sorted(sink.arrived[j] for j in ids if j in sink.arrived)
        deliveries = sum(1 for d in sink.deliveries if d.event["data"]["object"]["job_id"] in load.accepted)
    n = max(1, len(ids))
    return {"load": load, "all_notified": ok, "done": len(done),
            "rate": len(done) / (done[-1] - load.first_submit) if done else 0.0,
            "cpu": used, "machine": on_machine, "peak": peak, "kind": kind,
            "tasks": {k: (after[k] - before[k]) / n for k in after}, "notify_per_job": deliveries / n}


def report_throughput(fig: dict, overhead: driver.Overheads, n: int) -> None:
    load = fig["load"]
    print(f"throughput: {len(load.accepted)} accepted, {load.refused} refused, {fig['done']} notified"
          f"{'' if fig['all_notified'] else ' (TIMED OUT)'}")
    cpu_total = sum(fig["cpu"].values()) / n
    print(f"  sustained {fig['rate']:.1f} jobs/s (first submit → last notification); CPU-bound "
          f"estimate on {os.cpu_count()} idle cores, PostgreSQL/Redis/client not counted: "
          f"{os.cpu_count() * 1000 / cpu_total:.0f} jobs/s")
    print("  CPU-ms per job by service: " + ", ".join(
        f"{k} {v / n:.1f}" for k, v in sorted(fig["cpu"].items(), key=lambda kv: -kv[1]))
          + f"; total {cpu_total:.1f}")
    whole = {k: v / n for k, v in fig["machine"].items()}
    rest = whole["machine"] - cpu_total - sum(v for k, v in whole.items() if k != "machine")
    print(f"  whole machine CPU-ms per job: {whole['machine']:.1f} = the stack above {cpu_total:.1f}, "
          + ", ".join(f"{k} {v:.1f}" for k, v in whole.items() if k != "machine")
          + f", the rest (kernel, others) {rest:.1f}; {os.cpu_count()} cores give "
          f"{os.cpu_count() * 1000 / 100:.0f} ms per job at 100 jobs/s")
    print(f"  stack peak memory ({fig['kind']}): {fig['peak'].peak_mib:.0f} MiB = " + ", ".join(
        f"{k} {v:.0f}" for k, v in sorted(fig["peak"].peak_by_service.items(), key=lambda kv: -kv[1])))
    tasks = fig["tasks"]
    http = 1 + overhead.status_calls / max(1, len(load.accepted)) + fig["notify_per_job"]
    print(f"  counted per job: {sum(tasks.values()):.2f} task deliveries ("
          + ", ".join(f"{k} {v:.2f}" for k, v in tasks.items())
          + f"), {http:.2f} worker HTTP calls (/run 1, /status "
          f"{overhead.status_calls / max(1, len(load.accepted)):.2f}, notify {fig['notify_per_job']:.2f})")


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=300, help="jobs in the throughput run")
    ap.add_argument("--workers", choices=["single", "per-queue"], default="single")
    ap.add_argument("--clients", type=int, default=8, help="client threads submitting")
    ap.add_argument("--paced", type=int, default=100, help="jobs in the overhead run")
    ap.add_argument("--rate", type=float, default=10, help="jobs/s offered in the overhead run")
    ap.add_argument("--coalesce-s", type=float, default=None,
                    help="GPUBILL_RUNPOD_COALESCE_S for the run (default: the setting's default)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the sink's and no-op server's access lines
    print(f"machine: {machine()}")
    print(f"load average at start: {loadavg()}")
    env = {"GPUBILL_RATE_LIMIT_API": "1000000/minute", "GPUBILL_LOG_LEVEL": "INFO"}
    if args.coalesce_s is not None:
        env["GPUBILL_RUNPOD_COALESCE_S"] = str(args.coalesce_s)
    with tempfile.TemporaryDirectory() as tmp, driver.TimedSink() as sink, \
            running_stack(Path(tmp), workers=args.workers.replace("-", "_"),
                          GPUBILL_NOTIFY_URL=sink.url, **env) as stack:
        cfg = stack.settings
        plan = code_plan()
        print(f"stack: workers={args.workers}, concurrency {stack.worker_concurrency} (prefork) per worker, "
              f"receiver {cfg.receiver_workers} gunicorn workers x 4 threads, "
              f"GPUBILL_RUNPOD_COALESCE_S={cfg.runpod_coalesce_s:g}")
        print(f"per job, from the code: {len(plan)} task executions, {sum(plan)} worker HTTP calls: {CODE_PATH}")
        users = driver.fund(stack, args.jobs + args.paced)
        fig = throughput(stack, sink, users, args)
        report_throughput(fig, driver.overheads(stack, fig["load"]), max(1, len(fig["load"].accepted)))
        paced = driver.submit(stack, users, args.paced, args.clients, rate=args.rate)
        driver.wait_notified(sink, list(paced.accepted), timeout_s=120)
        over = driver.overheads(stack, paced)
        print(f"overhead ({len(paced.accepted)} jobs at {args.rate:g}/s):")
        print(f"  accepted → /run received:       p50 {percentile(over.to_run_ms, 50):7.1f} ms  "
              f"p95 {percentile(over.to_run_ms, 95):7.1f} ms  (n={len(over.to_run_ms)})")
        print(f"  callback sent → capture committed: p50 {percentile(over.to_capture_ms, 50):7.1f} ms  "
              f"p95 {percentile(over.to_capture_ms, 95):7.1f} ms  (n={len(over.to_capture_ms)})")
        print("task wall time in the worker (whole run; mean ms, n): " + ", ".join(
            f"{k} {ms:.1f} ({n})" for k, (n, ms) in task_runtimes(stack).items()))
        pools = 1 if args.workers == "single" else 3  # per-queue: jobs, gpu_status, notify serve a job
        ceiling = run_ceiling(cfg.broker_url, plan, args.jobs, stack.worker_concurrency * pools,
                              Path(tempfile.gettempdir()) / "gpubill-bench-ceiling.log")
    print(f"ceiling: bare Celery chain of {len(plan)} tasks, {sum(plan)} HTTP calls per job (plan {plan}), "
          f"{ceiling.done}/{ceiling.jobs} done, {ceiling.jobs_per_s:.1f} jobs/s, "
          f"worker CPU {ceiling.worker_cpu_ms / max(1, ceiling.jobs):.1f} ms/job "
          f"(CPU-bound estimate {os.cpu_count() * 1000 * ceiling.jobs / ceiling.worker_cpu_ms:.0f} jobs/s)")
    ratio = fig["rate"] / ceiling.jobs_per_s if ceiling.jobs_per_s else float("nan")
    pipe_cpu = sum(fig["cpu"].values()) / max(1, len(fig["load"].accepted))
    print(f"ratio pipeline/ceiling: {ratio:.3f} jobs/s; by CPU-ms per job (ceiling/pipeline) "
          f"{ceiling.worker_cpu_ms / max(1, ceiling.jobs) / pipe_cpu:.3f}")
    print(f"load average at end: {loadavg()}")
    print("targets:")
    print(target("pipeline/ceiling ≥ 0.5", ratio >= 0.5, f"{ratio:.3f}"))
    print(target("≥ 100 jobs/s", fig["rate"] >= 100, f"{fig['rate']:.1f} jobs/s"))
    for name, values in (("accept → /run", over.to_run_ms), ("callback → capture", over.to_capture_ms)):
        p50 = percentile(values, 50)
        print(target(f"{name} p50 ≤ 10 ms", p50 <= 10, f"{p50:.1f} ms"))


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f} s)")
