"""The RunPod stand-in's ground truth (``GET /_control/jobs``): every job it accepted,
with its policy, state and measured execution — what RunPod would bill us for."""
from __future__ import annotations

from typing import Any

import requests

from base.settings import Settings


def runpod_jobs(cfg: Settings) -> list[dict[str, Any]]:
    """Every job the stand-in accepted (``emulators.runpod.engine.Engine.ground_truth``)."""
    root = cfg.runpod_base_url.rstrip("/").removesuffix("/v2")
    answer = requests.get(f"{root}/_control/jobs", timeout=10, headers={
        "Authorization": f"Bearer {cfg.runpod_api_key.get_secret_value()}"})
    answer.raise_for_status()
    return answer.json()["jobs"]


def runpod_jobs_for(cfg: Settings, nonce: str) -> list[dict[str, Any]]:
    """The accepted RunPod jobs whose input carries ``nonce``."""
    return [j for j in runpod_jobs(cfg) if j["input"].get("nonce") == nonce]
