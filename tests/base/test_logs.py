"""The stack's log files: one JSON object per line carrying the ids of the work
(``job_id``, ``event_id``, ``user_id``, ``task``), and never a secret."""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ledger.db import transaction
from ledger.models import Job
from pricing import load_packs
from tests.helpers import Api, wait_for

pytestmark = pytest.mark.integration


def _lines(log_dir: Path, prefix: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(log_dir.glob(f"{prefix}*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))  # every JSON-looking line parses
    return found


def test_log_lines_are_json_with_the_ids_of_the_work(stack) -> None:
    api = Api(stack)
    user = f"u-{secrets.token_hex(4)}"
    event = api.topup(user, "small")
    wait_for(lambda: api.wallet(user)["balance"] == load_packs()["small"].credits, 30, "credit")
    job_id = api.submit(user, "track", 30, {"emulator": {"execution_ms": 300}}).json()["job_id"]
    api.wait_job(job_id, ("completed",))

    def worker_lines():
        lines = _lines(stack.log_dir, "worker")
        tasks = {(ln.get("task"), ln.get("job_id") or ln.get("event_id")) for ln in lines}
        return {("jobs.dispatch", job_id),
                ("stripe.process_event", event["id"])} <= tasks and lines

    lines = wait_for(worker_lines, 20, "task lines with ids in the worker log")
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
    dispatch_line = next(ln for ln in lines if ln.get("task") == "jobs.dispatch" and ln.get("job_id") == job_id)
    assert dispatch_line["task_id"] and "succeeded" in dispatch_line["message"]

    receiver = wait_for(lambda: [ln for ln in _lines(stack.log_dir, "receiver")
                                 if ln.get("job_id") == job_id and ln.get("route") == "/v1/jobs"],
                        10, "the job's request line")
    assert receiver[0]["user_id"] == user and receiver[0]["status"] == 202
    assert receiver[0]["logger"] == "gpubill.request"
    assert any(ln.get("logger", "").startswith("gunicorn") for ln in _lines(stack.log_dir, "receiver"))


def _topped_up_and_one_job(stack) -> tuple[str, str]:
    """A user tops up the small pack and runs one framing job to completion: (user, job id)."""
    api = Api(stack)
    user = f"u-{secrets.token_hex(4)}"
    api.topup(user, "small")
    wait_for(lambda: api.wallet(user)["balance"] == load_packs()["small"].credits, 30, "credit")
    job_id = api.submit(user, "framing", 30, {"emulator": {"execution_ms": 200}}).json()["job_id"]
    api.wait_job(job_id, ("completed",))
    return user, job_id


def test_no_secret_reaches_any_log_file(stack, sessions) -> None:
    user, _ = _topped_up_and_one_job(stack)
    cfg = stack.settings
    secrets_used = [cfg.stripe_webhook_secret.get_secret_value(), cfg.runpod_api_key.get_secret_value(),
                    cfg.runpod_token_secret.get_secret_value(), *cfg.api_key_values(),
                    cfg.flower_basic_auth.get_secret_value().partition(":")[2]]
    with transaction(sessions) as s:
        tokens = list(s.scalars(select(Job.webhook_token).where(Job.user_id == user)))
    assert tokens
    text = "\n".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*.log"))
    for value in [*secrets_used, *tokens]:
        assert value not in text, f"a secret ({value[:4]}…) is in the logs"
    assert "Bearer " not in text


def _iso_with_zone(text: str) -> bool:
    """True if ``text`` is ISO 8601 with a date, a time and a UTC offset or Z."""
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in text and parsed.tzinfo is not None


def test_every_log_line_has_an_iso_8601_time_with_a_zone(stack) -> None:
    """Receiver, workers, beat and both stand-ins: every JSON line's ``time`` is ISO
    8601 with its zone (not logging's default ``2026-12-01 19:53:16,991``)."""
    _topped_up_and_one_job(stack)
    services = ("receiver", "worker", "beat", "runpod-emulator", "stripe-emulator")
    lines = wait_for(lambda: (found := {s: _lines(stack.log_dir, s) for s in services})
                     and all(found.values()) and found, 20, "JSON lines from every service")
    for service, found in lines.items():
        bad = [ln["time"] for ln in found if not _iso_with_zone(str(ln.get("time")))]
        assert not bad, f"{service}: {bad[:3]}"
