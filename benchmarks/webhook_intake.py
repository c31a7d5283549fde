"""Webhook intake: Stripe events verified + stored + enqueued per second through the
receiver under gunicorn, latency at a fixed offered load, the framework's ceiling on
the same server settings, and the peak memory of the receiver and the worker.

    .venv/bin/python -m benchmarks.webhook_intake [--seconds 10] [--rate 500] [--clients 16]

Runs the whole service on PostgreSQL + Redis at 127.0.0.1. Workers are paused during
the intake runs so the figures are the receiver's alone (the events wait in Redis and
are processed afterwards). The receiver answers once an event is stored and enqueues it
just after (``base.batch_publisher``). The run ends by checking every event was then
applied once, and counts those the outbox sweeper had to enqueue instead (0 when the
receiver enqueued them all). Load comes from ``--clients`` processes on keep-alive
connections; the paced run schedules every request in advance.

Two references on the receiver's exact gunicorn settings (``benchmarks.bare_app``): the
bare route (``return ""``, the framework's ceiling; issue 17's target is intake ≥ 0.5×
it) and the *store floor*, the same route plus one plain-psycopg ``INSERT`` of the raw
body and its ``COMMIT`` — what any receiver that stores an event before answering
(Stripe: answer 2xx once the event is safely stored) must at least do.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from benchmarks.common import machine, peak_rss_mib, percentile, running_stack
from emulators.stripe import events as stripe_events
from gpubill.broker import free_port
from gpubill.launcher import Stack
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.models import EventStatus, StripeEvent
from pricing import load_packs


def _bodies(secret: str, n: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
    pack = load_packs()["small"]
    out = []
    for i in range(n):
        session = stripe_events.paid_checkout_session(user_id=f"bench-{tag}-{i % 500}", pack="small",
                                                      amount_total=pack.price)
        out.append(stripe_events.signed(stripe_events.event("checkout.session.completed", session), secret))
    return out


def _client(port: int, path: str, bodies: list[tuple[bytes, dict[str, str]]], seconds: float,
            interval: float | None, offset: float,
            ready: mp.synchronize.Barrier, out: mp.Queue[tuple[int, int, list[float], float]]) -> None:
    """One process, one keep-alive connection: send as fast as answers come (``interval``
    None), or request k at ``start + offset + k·interval``, latency counted from its
    scheduled time (a server that falls behind is charged for the wait)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    ok = bad = 0
    ready.wait()
    start = time.perf_counter()
    k = 0
    while True:
        scheduled = start + offset + k * interval if interval else time.perf_counter()
        if scheduled - start >= seconds:
            break
        if interval and (delay := scheduled - time.perf_counter()) > 0:
            time.sleep(delay)
        body, headers = bodies[k % len(bodies)]
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - scheduled)
        ok, bad = (ok + 1, bad) if resp.status == 200 else (ok, bad + 1)
        k += 1
    out.put((ok, bad, latencies, time.perf_counter() - start))


def _load(port: int, path: str, bodies: list[list[tuple[bytes, dict[str, str]]]], seconds: float,
          rate: float | None) -> tuple[float, int, list[float]]:
    """(answers per second, non-200 count, sorted latencies in ms) over all clients; the
    rate is over the slowest client's elapsed time (one that fell behind an offered rate
    takes longer than ``seconds``). Paced: overall request i goes at ``i / rate``, from
    client i mod clients, so the clients' schedules interleave evenly."""
    clients = len(bodies)
    out: mp.Queue[tuple[int, int, list[float], float]] = mp.Queue()
    ready = mp.Barrier(clients)
    procs = [mp.Process(target=_client, args=(port, path, bodies[c], seconds,
                                             clients / rate if rate else None, c / rate if rate else 0.0,
                                             ready, out))
             for c in range(clients)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    ok = sum(r[0] for r in results)
    bad = sum(r[1] for r in results)
    lat = sorted(x * 1000 for r in results for x in r[2])
    return (ok + bad) / max(r[3] for r in results), bad, lat


def _bare_server(stack: Stack, app: str = "create_app()") -> tuple[subprocess.Popen[bytes], int]:
    """gunicorn with the receiver's exact settings (config module, workers, threads,
    logging) serving one of ``benchmarks.bare_app``'s references: command-line bind and
    app override the config."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:gpubill.gunicorn_conf",
            "--bind", f"127.0.0.1:{port}", f"benchmarks.bare_app:{app}"]
    env = {**os.environ, **stack.env, "GPUBILL_BENCH_STORE_DSN": _conninfo(stack)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("POST", "/", body=b"{}")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("bare gunicorn did not start")


def _conninfo(stack: Stack) -> str:
    """The stack's database as a libpq conninfo (for the store floor's plain psycopg)."""
    return make_url(stack.settings.sqlalchemy_url).set(drivername="postgresql").render_as_string(
        hide_password=False)


def _reference(stack: Stack, app: str, bodies: list[list[tuple[bytes, dict[str, str]]]],
               seconds: float) -> tuple[float, list[float]]:
    """(req/s, sorted ms) of a ``benchmarks.bare_app`` reference served flat out; raises
    if any answer was not 200 (an error answered fast would flatter the reference)."""
    server, port = _bare_server(stack, app)
    try:
        _load(port, "/", bodies, 2, None)
        rps, bad, lat = _load(port, "/", bodies, seconds, None)
    finally:
        server.kill()
        server.wait()
    if bad:
        raise RuntimeError(f"reference {app}: {bad} answers were not 200")
    return rps, lat


def main() -> None:
    args = _args()
    print(f"machine: {machine()}; task-sent events {'off' if args.no_sent_events else 'on'}")
    # The outbox sweeper waits an hour: with the workers paused it would re-enqueue the
    # backlog, and the count of events it enqueued is how the run shows the receiver lost none.
    env = {"GPUBILL_OUTBOX_AFTER_S": "3600"}
    if args.no_sent_events:
        env["GPUBILL_TASK_SENT_EVENTS"] = "false"
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), **env) as stack:
        workers = [c.name for c in stack.children if c.name.startswith("worker")]
        with ExitStack() as paused:
            for name in workers:
                paused.enter_context(stack.paused(name))
            _intake(stack, args)
        rss = peak_rss_mib(stack.child("receiver").proc.pid)
        print(f"peak RSS: receiver (gunicorn master + workers) {rss:.0f} MiB")
        sys.exit(_drain(stack, workers))


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, default=500, help="offered load for the latency run (events/s)")
    ap.add_argument("--no-sent-events", action="store_true",
                    help="run the service with GPUBILL_TASK_SENT_EVENTS=false (no task-sent events for Flower)")
    ap.add_argument("--clients", type=int, default=16,
                    help="load processes, one keep-alive connection each (enough that a paced "
                         "client is never still waiting when its next request is due)")
    return ap.parse_args()


def _intake(stack: Stack, args: argparse.Namespace) -> None:
    """With the workers paused: intake flat out, intake at ``args.rate``, and a bare
    gunicorn on the same settings as the ceiling; prints each (events/s, ms)."""
    cfg = stack.settings
    secret = cfg.stripe_webhook_secret.get_secret_value()
    port = int(cfg.receiver_port)
    per_client = int(max(args.rate, 3000) * args.seconds / args.clients) + 10
    runs = {name: [_bodies(secret, n, f"{name}{c}") for c in range(args.clients)]
            for name, n in (("warm", 500), ("max", per_client), ("paced", per_client))}
    _load(port, "/webhooks/stripe", runs["warm"], 2, None)
    rps, bad, lat = _load(port, "/webhooks/stripe", runs["max"], args.seconds, None)
    print(f"intake, {args.clients} connections flat out: {rps:7.0f} events/s verified+stored and answered "
          f"(p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, non-200 {bad})")
    prps, pbad, plat = _load(port, "/webhooks/stripe", runs["paced"], args.seconds, args.rate)
    print(f"intake at {args.rate:.0f}/s offered: {prps:7.0f} events/s, p50 {percentile(plat, 50):.1f} ms, "
          f"p99 {percentile(plat, 99):.1f} ms, max {plat[-1]:.1f} ms, non-200 {pbad}")
    brps, blat = _reference(stack, "create_app()", [[(b"", {"Content-Type": "application/json"})]] * args.clients,
                            args.seconds)
    print(f"bare `return \"\"` on the same gunicorn settings: {brps:7.0f} req/s "
          f"(p50 {percentile(blat, 50):.1f} ms); intake is {rps / brps:.0%} of that ceiling")
    engine = make_engine(stack.settings.sqlalchemy_url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE IF NOT EXISTS bench_store_floor (id bigserial PRIMARY KEY, body text NOT NULL)"))
    engine.dispose()
    frps, flat = _reference(stack, "create_store_app()", runs["max"], args.seconds)
    print(f"store floor (the same route + one INSERT of the raw body and its COMMIT; no check, no parse, "
          f"no publish): {frps:7.0f} req/s (p50 {percentile(flat, 50):.1f} ms), {frps / brps:.0%} of the bare "
          f"route; intake is {rps / frps:.0%} of the store floor")
    print(f"target: [{'PASS' if rps >= 0.5 * brps else 'MISS'}] intake ≥ 0.5× the bare route: {rps / brps:.2f}")


def _drain(stack: Stack, workers: list[str]) -> int:
    """Let the workers apply the backlog (up to 600 s) and print what they did; the exit
    status: 0 if nothing was left unprocessed."""
    sessions = make_sessionmaker(make_engine(stack.settings.sqlalchemy_url))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with transaction(sessions) as s:
            pending = s.scalar(select(func.count()).select_from(StripeEvent)
                               .where(StripeEvent.status == EventStatus.RECEIVED))
            stored = s.scalar(select(func.count()).select_from(StripeEvent))
        if pending == 0:
            break
        time.sleep(1)
    for name in workers:
        print(f"peak RSS: {name} (Celery main + pool) {peak_rss_mib(stack.child(name).proc.pid):.0f} MiB "
              f"after applying the backlog")
    with transaction(sessions) as s:
        swept = s.scalar(select(func.count()).select_from(StripeEvent).where(StripeEvent.republishes > 0))
    print(f"stored events {stored} (distinct ids among the answered requests), all applied by the "
          f"workers afterwards: left unprocessed {pending}; enqueued by the outbox sweeper instead "
          f"of the receiver {swept}")
    return 0 if pending == 0 else 1


if __name__ == "__main__":
    main()
