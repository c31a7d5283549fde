"""Job rows and the quote frozen in them."""
from __future__ import annotations

from typing import Any

from ledger.models import Job, JobStatus, utcnow
from pricing import Quote


def new_job(*, job_id: str, user_id: str, job_type: str, params: dict[str, Any],
            job_input: dict[str, Any], quote: Quote, webhook_token: str) -> Job:
    """A ``requested`` job priced by ``quote`` (credits, Decimal prices, GPU-seconds)."""
    now = utcnow()
    return Job(
        id=job_id, user_id=user_id, type=job_type, status=JobStatus.REQUESTED,
        params=params, input=job_input, ratecard_version=quote.ratecard_version,
        endpoint_id=quote.endpoint_id, gpu=quote.gpu,
        estimated_gpu_seconds=quote.estimated_gpu_seconds, hold_credits=quote.hold_credits,
        max_gpu_seconds=quote.max_gpu_seconds, credits_per_gpu_second=quote.credits_per_gpu_second,
        min_charge=quote.min_charge, gpu_usd_per_second=quote.gpu_usd_per_second,
        webhook_token=webhook_token, dispatch_attempts=0, created_at=now, updated_at=now,
    )


def job_quote(job: Job) -> Quote:
    """The quote frozen on the job when it was requested."""
    return Quote(job_type=job.type, ratecard_version=job.ratecard_version,
                 endpoint_id=job.endpoint_id, gpu=job.gpu,
                 estimated_gpu_seconds=job.estimated_gpu_seconds, hold_credits=job.hold_credits,
                 max_gpu_seconds=job.max_gpu_seconds,
                 credits_per_gpu_second=job.credits_per_gpu_second, min_charge=job.min_charge,
                 gpu_usd_per_second=job.gpu_usd_per_second)
