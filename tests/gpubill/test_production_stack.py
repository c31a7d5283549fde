"""The production topology on one stack of its own (a Celery worker per queue, beat with
its RedBeat lock, Flower; its own database and broker), started once for this module:

- Flower shows every task by its explicit name with ids-only arguments, its runtime and
  worker, one worker per queue and queue lengths; it is read-only and behind basic auth.
- ``/metrics`` money figures move exactly as the ledger does (a job completes and is
  charged); open holds and backlogs show while work waits; RunPod latency recorded in
  Celery pool processes reaches the receiver's scrape.
- Exactly one beat: the RedBeat lock is held while beat runs and released on stop; the
  container healthchecks (``gpubill.healthcheck``) see workers, beat and HTTP services.
"""
from __future__ import annotations

import ast
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
import requests

from base import queues
from gpubill.broker import free_port
from gpubill.launcher import Stack
from pricing import load_packs
from tests.helpers import Api, scrape, value, wait_for
from tests.stacks import production_stack

pytestmark = pytest.mark.integration
CREDITS = "gpubill_credits_total"
LOCK = "gpubill:redbeat:lock"


@pytest.fixture(scope="module")
def prod_stack(backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Module-scoped: it holds database connections, so it must not idle through the
    rest of the session (PostgreSQL's connection limit is shared by every test run)."""
    yield from production_stack(tmp_path_factory.mktemp("prod"), backend.name)


# -- Flower ----------------------------------------------------------------------------
def _get(stack, path: str):
    user, _, password = stack.settings.flower_basic_auth.get_secret_value().partition(":")
    return requests.get(f"{stack.flower_url}{path}", auth=(user, password), timeout=10)


def test_flower_shows_each_task_by_name_with_ids_only(prod_stack) -> None:
    api = Api(prod_stack)
    user = f"u-{secrets.token_hex(4)}"
    event = api.topup(user, "small")
    wait_for(lambda: api.wallet(user)["balance"] == load_packs()["small"].credits, 60, "credit")
    r = api.submit(user, "framing", 30, {"emulator": {"execution_ms": 400}})
    job_id = r.json()["job_id"]
    assert api.wait_job(job_id, ("completed",), 60)["charge"] >= 1

    wanted = {queues.PROCESS_STRIPE_EVENT, queues.DISPATCH, queues.REFRESH_STATUS}

    def seen():
        tasks = _get(prod_stack, "/api/tasks").json()
        done = {t["name"] for t in tasks.values() if t["state"] == "SUCCESS"}
        return wanted <= done and tasks

    tasks = wait_for(seen, 60, "Flower to see the money path's tasks succeed")
    # a refresh may also carry the RunPod job id its callback named (issue 11)
    for_job = [t for t in tasks.values() if list(ast.literal_eval(t["args"]))[:1] == [job_id]]
    assert {t["name"] for t in for_job} >= {queues.DISPATCH, queues.REFRESH_STATUS}
    for task in for_job:
        assert task["runtime"] is not None and task["worker"]
        queue = queues.ROUTES[task["name"]]
        assert task["worker"].startswith(f"worker-{queue}-"), (task["name"], task["worker"])
    stripe_tasks = [t for t in tasks.values() if t["name"] == queues.PROCESS_STRIPE_EVENT]
    # one event alone, or with others the receiver published in the same batch
    assert any(event["id"] in ast.literal_eval(t["args"]) for t in stripe_tasks)
    # Arguments are ids only (``prefix_token``, or a RunPod job id, a UUID): no amounts,
    # bodies or secrets in a task.
    for task in tasks.values():
        for arg in ast.literal_eval(task["args"]):  # Flower shows repr() of the arguments
            assert isinstance(arg, str) and re.fullmatch(
                r"[a-z]+_[A-Za-z0-9_]+|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}(-[a-z0-9]+)?", arg), task
        assert ast.literal_eval(task["kwargs"]) == {}, task


def test_flower_lists_one_worker_per_queue_and_queue_lengths(prod_stack) -> None:
    def workers():
        found = _get(prod_stack, "/api/workers?refresh=1").json()
        return len(found) >= len(queues.QUEUES) and all("registered" in i for i in found.values()) and found

    found = wait_for(workers, 60, "every worker in Flower")
    consumed = sorted(tuple(q["name"] for q in info["active_queues"]) for info in found.values())
    assert consumed == sorted((q,) for q in queues.QUEUES)
    # Each worker imported only its queue's task modules (worker.queue_tasks), and all of them.
    registered = {info["active_queues"][0]["name"]: sorted(info["registered"]) for info in found.values()}
    assert registered == {q: sorted(n for n, r in queues.ROUTES.items() if r == q) for q in queues.QUEUES}

    # Alive by their worker-heartbeat events, sent every stack_argv.EVENT_HEARTBEAT_S.
    def status():
        found = _get(prod_stack, "/api/workers?status=1").json()
        return len(found) >= len(queues.QUEUES) and found

    alive = wait_for(status, 60, "heartbeats of every worker")
    assert all(alive.values()), alive

    lengths = _get(prod_stack, "/api/queues/length").json()["active_queues"]
    assert {q["name"] for q in lengths} == set(queues.QUEUES)
    assert all(isinstance(q["messages"], int) for q in lengths)


def test_flower_is_read_only_and_needs_basic_auth(prod_stack) -> None:
    assert requests.get(f"{prod_stack.flower_url}/api/workers", timeout=10).status_code == 401
    wrong = requests.get(f"{prod_stack.flower_url}/api/workers", auth=("gpubill", "nope"), timeout=10)
    assert wrong.status_code == 401
    user, _, password = prod_stack.settings.flower_basic_auth.get_secret_value().partition(":")
    r = requests.post(f"{prod_stack.flower_url}/api/task/send-task/{queues.SWEEP_OUTBOX}",
                      auth=(user, password), json={}, timeout=10)
    assert r.status_code == 403 and "Read only mode is enabled" in r.text
    name = next(iter(_get(prod_stack, "/api/workers").json()), "worker-jobs")
    r = requests.post(f"{prod_stack.flower_url}/api/worker/shutdown/{name}",
                      auth=(user, password), timeout=10)
    assert r.status_code == 403



def test_flowers_metrics_need_its_login_and_its_log_times_are_iso(prod_stack) -> None:
    """Issue 15 repro 7: Flower's own /metrics answered anyone (Flower 2.2 does not
    decorate that handler); behind ``gpubill.flower_guard`` it takes the same basic-auth
    login as Flower's pages. Issue 16: Flower's log lines carry ISO 8601 UTC times."""
    from datetime import datetime

    url = f"{prod_stack.flower_url}/metrics"
    anonymous = requests.get(url, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert "flower_" not in anonymous.text
    user, _, _ = prod_stack.settings.flower_basic_auth.get_secret_value().partition(":")
    assert requests.get(url, auth=(user, "nope"), timeout=10).status_code == 401
    ok = _get(prod_stack, "/metrics")
    assert ok.status_code == 200 and "flower_" in ok.text
    assert requests.get(f"{prod_stack.flower_url}/healthcheck", timeout=10).status_code == 200  # probes
    # tornado's "[I 261206 21:39:56 command:177] ..." lines, now with the ISO time
    lines = [ln for ln in (prod_stack.log_dir / "flower.log").read_text().splitlines() if ln.startswith("[")]
    assert lines
    for ln in lines:
        stamp = ln[1:].split()[1]
        assert "T" in stamp and datetime.fromisoformat(stamp).utcoffset() is not None, ln


# -- metrics ---------------------------------------------------------------------------
def _funded(api: Api) -> str:
    user = f"u-{secrets.token_hex(4)}"
    api.topup(user, "small")
    wait_for(lambda: api.wallet(user)["balance"] == load_packs()["small"].credits, 60, "credit")
    return user


def test_money_metrics_move_exactly_as_the_ledger(prod_stack) -> None:
    """Per-queue topology, own database: a top-up and one completed, charged job move
    topped_up / captured / released by exactly their amounts."""
    api = Api(prod_stack)
    before = scrape(prod_stack.receiver_url)
    user = _funded(api)
    r = api.submit(user, "overlay", 30, {"emulator": {"execution_ms": 700}})
    assert r.status_code == 202, r.text
    job = api.wait_job(r.json()["job_id"], ("completed", "failed"), 60)
    assert job["status"] == "completed" and job["charge"] >= 1

    def settled():
        now = scrape(prod_stack.receiver_url)
        return (value(now, CREDITS, flow="captured", direction="out")
                > value(before, CREDITS, flow="captured", direction="out") and now)

    after = wait_for(settled, 60, "the capture in /metrics")
    delta = {flow: value(after, CREDITS, flow=flow, direction=d) - value(before, CREDITS, flow=flow, direction=d)
             for flow, d in (("topped_up", "in"), ("captured", "out"), ("released", "in"), ("clawed_back", "out"))}
    assert delta == {"topped_up": load_packs()["small"].credits, "captured": job["charge"],
                     "released": job["released"], "clawed_back": 0}
    completed = [value(m, "gpubill_jobs", state="completed") for m in (before, after)]
    assert completed[1] - completed[0] == 1
    assert value(after, "gpubill_open_holds") == value(before, "gpubill_open_holds")
    assert value(after, "gpubill_ledger_up") == 1
    # Webhooks by outcome, measured in the gunicorn workers.
    for source in ("stripe", "runpod"):
        assert (value(after, "gpubill_webhook_requests_total", source=source, outcome="accepted")
                > value(before, "gpubill_webhook_requests_total", source=source, outcome="accepted"))
    assert value(after, "gpubill_webhook_request_duration_seconds_count", source="stripe") >= 1
    # RunPod calls happen in Celery pool processes; their latency reaches this scrape.
    assert (value(after, "gpubill_runpod_request_duration_seconds_count", op="run")
            - value(before, "gpubill_runpod_request_duration_seconds_count", op="run")) == 1
    assert value(after, "gpubill_runpod_request_duration_seconds_count", op="status") >= 1


def test_open_holds_and_backlogs_show_while_work_waits(prod_stack) -> None:
    """While the gpu_status worker is frozen the job's hold stays open; while the stripe
    worker is frozen the event waits unprocessed and ages. Both clear afterwards."""
    api = Api(prod_stack)
    user = _funded(api)
    base = scrape(prod_stack.receiver_url)
    with prod_stack.paused("worker-gpu_status"):
        r = api.submit(user, "framing", 30, {"emulator": {"execution_ms": 300}})
        hold = r.json()["quote"]["hold"]
        during = wait_for(lambda: (m := scrape(prod_stack.receiver_url))
                          and value(m, "gpubill_jobs", state="dispatched")
                          + value(m, "gpubill_jobs", state="in_progress")
                          == 1 and m, 60, "the dispatched job in /metrics")
        assert value(during, "gpubill_open_holds") == value(base, "gpubill_open_holds") + 1
        assert value(during, "gpubill_open_hold_credits") == value(base, "gpubill_open_hold_credits") + hold
    api.wait_job(r.json()["job_id"], ("completed",), 60)
    wait_for(lambda: value(scrape(prod_stack.receiver_url), "gpubill_open_holds")
             == value(base, "gpubill_open_holds"),
             60, "the hold to close in /metrics")

    with prod_stack.paused("worker-stripe"):
        api.topup(f"u-{secrets.token_hex(4)}", "small")
        waiting = wait_for(lambda: (m := scrape(prod_stack.receiver_url))
                           and value(m, "gpubill_outbox_backlog", kind="stripe_event") >= 1
                           and value(m, "gpubill_stripe_oldest_unprocessed_event_age_seconds") > 0 and m,
                           60, "the unprocessed Stripe event in /metrics")
        assert value(waiting, "gpubill_outbox_backlog", kind="stripe_event") >= 1
    wait_for(lambda: value(scrape(prod_stack.receiver_url), "gpubill_outbox_backlog",
                           kind="stripe_event") == 0,
             60, "the Stripe backlog to drain")
    assert value(scrape(prod_stack.receiver_url), "gpubill_stripe_oldest_unprocessed_event_age_seconds") == 0


# -- beat and healthchecks --------------------------------------------------------------
def _check(stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpubill.healthcheck", *args], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, **stack.env, **env})


def _acquired(stack) -> int:
    return (stack.log_dir / "beat.log").read_text(errors="replace").count("beat: Acquired lock")


def test_beat_holds_the_lock_and_a_restarted_beat_takes_it_over(prod_stack) -> None:
    broker = redis.Redis.from_url(prod_stack.settings.broker_url)
    wait_for(lambda: broker.pttl(LOCK) > 0, 60, "beat to hold its RedBeat lock")
    first = _acquired(prod_stack)
    assert first >= 1
    prod_stack.child("beat").stop(15)  # SIGTERM, as compose and gpubill up stop it
    # Released on stop (RedBeat's close()), not left to expire 30 s later.
    assert broker.exists(LOCK) == 0
    assert "beat: Releasing lock" in (prod_stack.log_dir / "beat.log").read_text(errors="replace")
    prod_stack.restart("beat")  # same command again
    wait_for(lambda: _acquired(prod_stack) == first + 1, 60, "the new beat to acquire the lock")
    assert broker.pttl(LOCK) > 0


def test_healthchecks_pass_on_the_running_stack(prod_stack) -> None:
    hostname = next(a for a in prod_stack.child("worker-jobs").argv if a.startswith("worker-jobs-"))
    for args in (("beat",), ("worker", hostname), ("http", f"{prod_stack.receiver_url}/readyz"),
                 ("http", f"{prod_stack.flower_url}/healthcheck")):
        result = _check(prod_stack, *args)
        assert result.returncode == 0, (args, result.stderr)


def _maps_db_driver(pid: int) -> bool:
    maps = open(f"/proc/{pid}/maps").read()  # the DBAPI's C extension, loaded with the task code
    return "psycopg_binary" in maps or "_sqlite3" in maps


def test_beat_and_flower_load_no_task_code_the_workers_do(prod_stack) -> None:
    """worker.app imports no task modules; only a worker's celeryd_init hook does."""
    for name in ("beat", "flower"):
        assert not _maps_db_driver(prod_stack.child(name).proc.pid), name
    assert all(_maps_db_driver(prod_stack.child(f"worker-{q}").proc.pid) for q in queues.QUEUES)


def test_healthchecks_fail_when_their_service_is_not_there(prod_stack) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert _check(prod_stack, "beat", GPUBILL_BROKER_URL=dead).returncode == 1
    assert _check(prod_stack, "worker", "nobody@nowhere").returncode == 1
    assert _check(prod_stack, "http", f"http://127.0.0.1:{free_port()}/readyz").returncode == 1
    assert _check(prod_stack, "nonsense").returncode == 2
