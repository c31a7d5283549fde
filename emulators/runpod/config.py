"""Configuration of the RunPod stand-in: per-endpoint execution profiles and API limits.

Loaded from TOML (``profiles.toml``) or a plain dict of the same shape::

    api_key = "rp_emulator_key"
    result_retention_s = 1800
    [endpoints.my-endpoint]
    base_ms = 300
    workers = 2
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EndpointProfile:
    """How one endpoint's jobs behave; all times in milliseconds.

    Execution target = ``base_ms + ms_per_clip_second * input["duration_s"]`` when the
    input carries a numeric ``duration_s``, else ``base_ms``. ``delay_ms`` is the
    queue/cold-start wait before a job can start. A job fails when
    ``int(sha256(canonical JSON of input), 16) % 1000 < fail_permille``, so the same
    input always gets the same outcome. At most ``workers`` jobs execute at once.
    """

    base_ms: int = 200
    ms_per_clip_second: int = 20
    delay_ms: int = 50
    fail_permille: int = 0
    workers: int = 4

    def __post_init__(self) -> None:
        for name in ("base_ms", "ms_per_clip_second", "delay_ms"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0")
        _require(0 <= self.fail_permille <= 1000, "fail_permille must be within 0..1000")
        _require(self.workers >= 1, "workers must be >= 1")


@dataclass(frozen=True)
class EmulatorConfig:
    """The whole stand-in.

    ``api_key``: expected in ``Authorization: Bearer …``. ``endpoints``: profile per
    endpoint id; with ``allow_any_endpoint`` other ids get ``EndpointProfile()``, else 404.
    ``result_retention_s`` (seconds): how long a finished job stays readable — RunPod keeps
    /run results 30 min (docs "Send API requests", result retention).
    ``webhook_retries`` / ``webhook_retry_delay_s``: RunPod retries a failed webhook call
    up to 2 more times, 10 s apart (same page, "Webhook notifications").
    ``min_execution_timeout_ms`` / ``min_ttl_ms`` / ``max_ttl_ms``: bounds on
    ``policy.executionTimeout`` (> 5000 ms) and ``policy.ttl`` (>= 10 s, <= 1 week) per the
    same page; tests lower the minimums to keep timeouts short.
    ``default_execution_timeout_ms`` (10 min) / ``default_ttl_ms`` (24 h): RunPod's defaults.
    """

    api_key: str = "rp_emulator_key"
    endpoints: dict[str, EndpointProfile] = field(default_factory=dict)
    allow_any_endpoint: bool = True
    result_retention_s: float = 1800
    webhook_retries: int = 2
    webhook_retry_delay_s: float = 10.0
    min_execution_timeout_ms: int = 5001
    default_execution_timeout_ms: int = 600_000
    min_ttl_ms: int = 10_000
    max_ttl_ms: int = 7 * 24 * 3600 * 1000
    default_ttl_ms: int = 86_400_000
    # A scripted "timeout" (input.emulator.run_errors) answers nothing for this long.
    hang_s: float = 15.0

    def __post_init__(self) -> None:
        _require(self.result_retention_s >= 0, "result_retention_s must be >= 0")
        _require(self.webhook_retries >= 0, "webhook_retries must be >= 0")
        _require(self.webhook_retry_delay_s >= 0, "webhook_retry_delay_s must be >= 0")

    def profile(self, endpoint_id: str) -> EndpointProfile | None:
        """The profile serving ``endpoint_id``, or None when the id is unknown and not allowed."""
        if endpoint_id in self.endpoints:
            return self.endpoints[endpoint_id]
        return EndpointProfile() if self.allow_any_endpoint else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmulatorConfig:
        """Build from ``{api_key, result_retention_s, …, endpoints: {id: {base_ms, …}}}``.

        Unknown keys raise ``ValueError`` so a typo in a profile file is not silently ignored.
        """
        top = dict(data)
        raw_endpoints = top.pop("endpoints", {}) or {}
        _reject_unknown(top, cls, "config")
        endpoints = {}
        for endpoint_id, raw in raw_endpoints.items():
            _reject_unknown(raw, EndpointProfile, f"endpoints.{endpoint_id}")
            endpoints[str(endpoint_id)] = EndpointProfile(**raw)
        return cls(endpoints=endpoints, **top)

    @classmethod
    def from_toml(cls, path: str | Path) -> EmulatorConfig:
        """Read a TOML profile file (see module docstring) with ``from_dict``'s rules."""
        with open(path, "rb") as fh:
            return cls.from_dict(tomllib.load(fh))


def _reject_unknown(data: dict[str, Any], kind: type, where: str) -> None:
    known = {f.name for f in fields(kind)} - {"endpoints"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
