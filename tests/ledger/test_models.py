"""The model package: status enums keep the stored (and HTTP) strings, the CHECKs are
generated from them, the groupings partition the job statuses, and the one backoff."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import CheckConstraint

from ledger.models import (
    Backoff,
    Base,
    EventStatus,
    HoldStatus,
    Job,
    JobStatus,
    NotificationStatus,
    ReversalStatus,
    RunPodJob,
    StripeEvent,
    TopupStatus,
)

# The strings stored in the database and shown by the HTTP API (docs/architecture.md).
STORED = {
    JobStatus: ["requested", "held", "dispatched", "in_progress", "completed", "failed",
                "timed_out", "lost", "cancelled", "expired", "rejected"],
    HoldStatus: ["open", "captured", "released", "expired"],
    EventStatus: ["received", "processed", "ignored", "failed", "wrong_mode"],
    TopupStatus: ["open", "credited", "failed", "expired", "mismatch"],
    ReversalStatus: ["active", "failed", "withdrawn", "reinstated", "lost", "won", "inquiry"],
    NotificationStatus: ["pending", "sent", "failed", "skipped"],
}


def test_status_values_are_the_stored_strings() -> None:
    for enum, values in STORED.items():
        assert [str(m) for m in enum] == values
        assert all(m == v and f"{m}" == v for m, v in zip(enum, values, strict=True))


def test_each_status_column_has_a_check_generated_from_its_enum() -> None:
    checks = {(c.table.name, str(c.name)): str(c.sqltext) for t in Base.metadata.tables.values()
              for c in t.constraints if isinstance(c, CheckConstraint)}
    assert checks[("jobs", "ck_jobs_status_known")] == (
        "status IN ('requested', 'held', 'dispatched', 'in_progress', 'completed', 'failed', "
        "'timed_out', 'lost', 'cancelled', 'expired', 'rejected')")
    assert checks[("holds", "ck_holds_status_known")] == (
        "status IN ('open', 'captured', 'released', 'expired')")  # as revision 0001 wrote it
    for table in ("stripe_events", "topups", "stripe_reversals", "notifications"):
        assert (table, f"ck_{table}_status_known") in checks
    assert {("runpod_jobs", "ck_runpod_jobs_role_known"), ("runpod_jobs", "ck_runpod_jobs_state_known"),
            ("jobs", "ck_jobs_stop_reason_known")} <= set(checks)


def test_job_groupings_partition_the_statuses() -> None:
    groups = (JobStatus.NOT_STARTED, JobStatus.RUNNING, JobStatus.TERMINAL)
    assert sum(len(g) for g in groups) == len(JobStatus)
    assert frozenset().union(*groups) == frozenset(JobStatus)
    assert JobStatus.RUNNING == {"dispatched", "in_progress"}
    assert ReversalStatus.TAKEN == {"active", "withdrawn", "lost"}


def test_one_backoff_for_the_outbox_and_the_poller() -> None:
    now = datetime(2026, 12, 7)
    for model in (Job, StripeEvent, RunPodJob):
        assert model.republishing() == Backoff(model.republishes, model.republish_at)
    assert Job.polling() == Backoff(Job.status_polls, Job.next_poll_at)
    # base × 2**(count + 1), capped: what services.sweeps waited before.
    assert Job.polling().after(2, now, 5.0) == {"status_polls": 3, "next_poll_at": now + timedelta(seconds=40)}
    assert Job.republishing().after(20, now, 5.0, 600.0)["republish_at"] == now + timedelta(seconds=600)
    due = str(StripeEvent.republishing().due(now))
    assert "republish_at IS NULL OR" in due
