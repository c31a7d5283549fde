"""What a RunPod stand-in job will do, decided once at submission: its execution time,
queue delay, outcome, and the failures its ``input.emulator`` overrides script.

Overrides (all optional, in ``input.emulator``): ``execution_ms``/``delay_ms`` (ms >= 0),
``fail`` (error message), ``never_finish``, ``output``, ``skip_webhook``, ``run_errors``/
``lost_answers`` (HTTP codes or ``"timeout"``), ``status_errors``/``cancel_errors`` (HTTP
codes), ``forget_after_s`` (s >= 0), ``webhook_twice``. Unknown keys are a ValueError.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, TypeGuard

from .config import EndpointProfile

_OVERRIDES = {"execution_ms", "delay_ms", "fail", "never_finish", "output", "skip_webhook",
              "run_errors", "status_errors", "forget_after_s", "webhook_twice", "lost_answers",
              "cancel_errors"}
# A scripted /run failure: an HTTP status to answer, or "timeout" (no answer in time).
TIMEOUT = "timeout"


class ScriptedFailure(Exception):
    """A /run or /status call the job's ``input.emulator`` scripts to fail: ``code``
    is the HTTP status to answer, or ``TIMEOUT`` (hang, then 504)."""

    def __init__(self, code: int | str) -> None:
        super().__init__(f"emulated {code}")
        self.code = code


@dataclass(frozen=True)
class Plan:
    """What a job will do, decided at submission from its input and endpoint profile.

    ``execution_ms`` None means it never finishes on its own (``never_finish``).
    """

    execution_ms: float | None
    delay_ms: float
    error: str | None
    output: Any
    skip_webhook: bool = False  # a lost callback: only polling /status finds the result
    status_errors: tuple[int, ...] = ()  # the first /status calls answer these codes
    cancel_errors: tuple[int, ...] = ()  # the first /cancel calls answer these codes
    forget_after_s: float | None = None  # forgotten this long after submission (→ 404)
    webhook_twice: bool = False  # RunPod delivering one callback twice


def plan_job(endpoint_id: str, job_id: str, job_input: dict[str, Any],
             profile: EndpointProfile) -> Plan:
    """Decide a job's execution from ``job_input`` (see ``EndpointProfile``) and its
    optional ``"emulator"`` overrides. Raises ``ValueError`` on malformed overrides."""
    overrides = job_input.get("emulator", {})
    if not isinstance(overrides, dict):
        raise ValueError("input.emulator must be an object")
    unknown = sorted(set(overrides) - _OVERRIDES)
    if unknown:
        raise ValueError(f"input.emulator: unknown key(s) {', '.join(unknown)}")
    for key in ("execution_ms", "delay_ms"):
        if key in overrides and not (_is_number(overrides[key]) and overrides[key] >= 0):
            raise ValueError(f"input.emulator.{key} must be a number >= 0")
    if "fail" in overrides and not isinstance(overrides["fail"], str):
        raise ValueError("input.emulator.fail must be a string (the error message)")
    run_errors(overrides)
    run_errors(overrides, "lost_answers")
    status_errors = overrides.get("status_errors", [])
    if not (isinstance(status_errors, list) and all(_is_error_code(c) for c in status_errors)):
        raise ValueError("input.emulator.status_errors must be a list of HTTP error codes")
    cancel_errors = overrides.get("cancel_errors", [])
    if not (isinstance(cancel_errors, list) and all(_is_error_code(c) for c in cancel_errors)):
        raise ValueError("input.emulator.cancel_errors must be a list of HTTP error codes")
    forget = overrides.get("forget_after_s")
    if forget is not None and not (_is_number(forget) and forget >= 0):
        raise ValueError("input.emulator.forget_after_s must be a number >= 0")

    duration = job_input.get("duration_s")
    execution_ms: float | None = profile.base_ms + (
        profile.ms_per_clip_second * duration if _is_number(duration) else 0)
    execution_ms = overrides.get("execution_ms", execution_ms)
    if overrides.get("never_finish"):
        execution_ms = None

    error = overrides.get("fail")
    if error is None and _unlucky(job_input, profile.fail_permille):
        error = f"emulated worker failure (fail_permille={profile.fail_permille})"
    default_output = {"output_url": f"s3://emulator/{endpoint_id}/{job_id}.mp4",
                      "endpoint_id": endpoint_id}
    return Plan(execution_ms=execution_ms,
                delay_ms=overrides.get("delay_ms", profile.delay_ms),
                error=error,
                output=overrides["output"] if "output" in overrides else default_output,
                skip_webhook=bool(overrides.get("skip_webhook", False)),
                status_errors=tuple(status_errors), forget_after_s=forget,
                cancel_errors=tuple(cancel_errors),
                webhook_twice=bool(overrides.get("webhook_twice", False)))


def run_errors(overrides: dict[str, Any], key: str = "run_errors") -> list[int | str]:
    """``input.emulator.run_errors``: what the first /run calls of this job answer
    instead of queueing it (HTTP error codes, or ``"timeout"``). ``lost_answers``, same
    shape: the first /run calls *accept and run* the job, then answer that instead of
    its id — RunPod's answer lost on the way back. ValueError if malformed."""
    errors = overrides.get(key, [])
    if not (isinstance(errors, list) and all(_is_error_code(c) or c == TIMEOUT for c in errors)):
        raise ValueError(f'input.emulator.{key} must be a list of HTTP error codes or "timeout"')
    return errors


def _is_error_code(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unlucky(job_input: dict[str, Any], fail_permille: int) -> bool:
    if fail_permille <= 0:
        return False
    canonical = json.dumps(job_input, sort_keys=True, separators=(",", ":"))
    return int(hashlib.sha256(canonical.encode()).hexdigest(), 16) % 1000 < fail_permille
