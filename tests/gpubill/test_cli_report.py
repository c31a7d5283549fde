"""``gpubill report margins``: the table equals a hand computation over jobs settled by
the worker's own lifecycle functions; ``--by``/``--since`` group and filter; ``--png``
writes a PNG. Runs on a database of its own, so only these jobs are counted."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import update

from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.models import Job, utcnow
from pricing import JobParams, charge, quote, runpod_cost_usd
from tests.factories import FundedWalletFactory, JobFactory
from tests.gpubill.operator_support import gpubill, own_database

pytestmark = pytest.mark.integration

HEADERS = ["jobs", "gpu_seconds", "credits", "revenue_usd", "runpod_cost_usd", "margin_%",
           "runpod_billed_usd", "billed_margin_%"]
DELAY_MS = 800  # every job's RunPod delayTime here; the card's cold_start_ms is 10,000

# (type, params, RunPod final status, executionTime ms)
JOBS = [
    ("framing", {"duration_s": 30}, "COMPLETED", 9_400),
    ("framing", {"duration_s": 12}, "COMPLETED", 4_100),
    ("upscale", {"duration_s": 30, "scale": 4}, "COMPLETED", 61_250),
    ("overlay", {"duration_s": 30}, "FAILED", 3_000),  # ran, failed: cost, no revenue
]


@pytest.fixture(scope="module")
def ledger_db(tmp_path_factory):
    with own_database(tmp_path_factory.mktemp("report")) as url:
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        user = FundedWalletFactory.create(sessions=factory, user_id="rep-user", credits=10_000).user_id
        # Settled by the worker's own steps: place_hold, record_dispatch, apply_status(final).
        jobs = [(JobFactory.create(sessions=factory, user_id=user, job_type=t, params=p, status=f.lower(),
                                   execution_ms=ms, delay_ms=DELAY_MS).id,
                 quote(t, JobParams(resolution="1080p", **p)), t, f, ms) for t, p, f, ms in JOBS]
        yield url, factory, jobs
        engine.dispose()


def parse(output: str) -> dict[str, dict[str, str]]:
    lines = [line.split() for line in output.splitlines() if line.strip()]
    assert lines[0][1:] == HEADERS
    return {cells[0]: dict(zip(HEADERS, cells[1:], strict=True)) for cells in lines[2:] if len(cells) == 9}


def expected(jobs, key) -> dict[str, dict[str, str]]:
    groups: dict[str, list] = {}
    for _job_id, q, job_type, final, ms in jobs:
        groups.setdefault(key(q, job_type), []).append((q, final, ms))
    groups["total"] = [j for k, js in list(groups.items()) for j in js]
    out = {}
    for k, js in groups.items():
        credits = sum(charge(q, ms) for q, final, ms in js if final == "COMPLETED")
        cost = sum((runpod_cost_usd(q, ms) for q, _, ms in js), Decimal(0))
        revenue = Decimal(credits) / 100
        margin = ((revenue - cost) / revenue * 100).quantize(Decimal("0.1")) if credits else None
        # RunPod bills whole seconds from wake-up: ceil((800 ms cold start + executionTime) / 1 s).
        billed = sum((-(-(DELAY_MS + ms) // 1000) * q.gpu_usd_per_second for q, _, ms in js), Decimal(0))
        billed_margin = ((revenue - billed) / revenue * 100).quantize(Decimal("0.1")) if credits else None
        out[k] = {"jobs": str(len(js)), "gpu_seconds": f"{Decimal(sum(ms for *_, ms in js)) / 1000:.3f}",
                  "credits": str(credits), "revenue_usd": f"{revenue:.2f}",
                  "runpod_cost_usd": f"{cost:.6f}", "margin_%": "-" if margin is None else str(margin),
                  "runpod_billed_usd": f"{billed:.6f}",
                  "billed_margin_%": "-" if billed_margin is None else str(billed_margin)}
    return out


def test_margins_by_type_equal_a_hand_computation(ledger_db) -> None:
    url, _, jobs = ledger_db
    result = gpubill(url, "report", "margins")
    assert result.exit_code == 0, result.output
    table = parse(result.output)
    assert table == expected(jobs, lambda q, t: t)
    assert table["overlay"]["credits"] == "0" and table["overlay"]["margin_%"] == "-"
    assert Decimal(table["total"]["margin_%"]) < 100


def test_margins_by_gpu_and_by_day(ledger_db) -> None:
    url, _, jobs = ledger_db
    by_gpu = gpubill(url, "report", "margins", "--by", "gpu")
    assert by_gpu.exit_code == 0 and parse(by_gpu.output) == expected(jobs, lambda q, t: q.gpu)
    by_day = gpubill(url, "report", "margins", "--by", "day")
    with transaction(ledger_db[1]) as s:
        [day] = {s.get(Job, j[0]).finished_at.date().isoformat() for j in jobs}
    assert by_day.exit_code == 0 and parse(by_day.output) == expected(jobs, lambda q, t: day)


def test_since_leaves_out_older_jobs(ledger_db) -> None:
    url, factory, jobs = ledger_db
    old_id = jobs[0][0]
    with transaction(factory) as s:  # report-only field: no money moves
        s.execute(update(Job).where(Job.id == old_id).values(
            finished_at=datetime(2026, 1, 5, 12, 0)))
    try:
        since = gpubill(url, "report", "margins", "--since", "2026-02-01")
        assert since.exit_code == 0
        assert parse(since.output) == expected(jobs[1:], lambda q, t: t)
        everything = gpubill(url, "report", "margins", "--since", "2026-01-05")
        assert parse(everything.output)["total"]["jobs"] == str(len(jobs))
    finally:
        with transaction(factory) as s:
            s.execute(update(Job).where(Job.id == old_id).values(finished_at=utcnow()))


def test_png_chart(ledger_db, tmp_path) -> None:
    out = tmp_path / "margins.png"
    result = gpubill(ledger_db[0], "report", "margins", "--by", "gpu", "--png", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000


def test_bad_options_are_usage_errors(ledger_db, tmp_path) -> None:
    url = ledger_db[0]
    assert gpubill(url, "report", "margins", "--by", "week").exit_code == 2
    bad_date = gpubill(url, "report", "margins", "--since", "yesterday")
    assert bad_date.exit_code == 2 and "Invalid value for '--since'" in bad_date.output
    unwritable = gpubill(url, "report", "margins", "--png", str(tmp_path / "no" / "dir" / "x.png"))
    assert unwritable.exit_code == 1 and "x.png" in unwritable.output


def test_empty_ledger_reports_zero(tmp_path) -> None:
    with own_database(tmp_path) as url:
        result = gpubill(url, "report", "margins")
    assert result.exit_code == 0
    assert parse(result.output) == {"total": {"jobs": "0", "gpu_seconds": "0.000", "credits": "0",
                                              "revenue_usd": "0.00", "runpod_cost_usd": "0.000000",
                                              "margin_%": "-", "runpod_billed_usd": "0.000000",
                                              "billed_margin_%": "-"}}
