"""The one settings object (pydantic-settings, env prefix ``GPUBILL_``), validated at start.

Embedded defaults need no servers: a SQLite ledger under ``data_dir``, a broker that the
launcher starts itself, the RunPod stand-in. In ``env=production`` every secret must be
set explicitly and the development defaults are refused, so a missing secret fails fast.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Development-only secrets: known values so the demo and tests can sign requests.
DEV_API_KEY = "gpubill_dev_api_key"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_gpubill_dev_secret"
DEV_RUNPOD_API_KEY = "rp_emulator_key"
DEV_RUNPOD_TOKEN_SECRET = "gpubill_dev_runpod_token_secret"
_DEV_SECRETS = {DEV_API_KEY, DEV_STRIPE_WEBHOOK_SECRET, DEV_RUNPOD_API_KEY, DEV_RUNPOD_TOKEN_SECRET}


class Settings(BaseSettings):
    """All configuration. Units: seconds unless a name says ``_ms``; URLs as strings."""

    model_config = SettingsConfigDict(env_prefix="GPUBILL_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")

    # Ledger database: SQLAlchemy URL; empty → SQLite (WAL) at data_dir/ledger.db.
    database_url: str = ""
    # Broker: redis:// URL; empty → the embedded broker the launcher starts (see
    # gpubill.broker), whose URL the launcher exports to every child process.
    broker_url: str = ""

    # The app's API keys (Authorization: Bearer ...), comma separated.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=lambda: [SecretStr(DEV_API_KEY)])
    stripe_webhook_secret: SecretStr = SecretStr(DEV_STRIPE_WEBHOOK_SECRET)
    # Which Stripe mode this deployment serves: test-mode events never touch a live ledger.
    stripe_livemode: bool = False
    # Stripe-Signature tolerance, seconds (Stripe's default, design.md).
    stripe_tolerance_s: int = 300

    runpod_api_key: SecretStr = SecretStr(DEV_RUNPOD_API_KEY)
    # RunPod serverless base URL; the SDK's default is https://api.runpod.ai/v2.
    runpod_base_url: str = "http://127.0.0.1:8010/v2"
    # Key for the per-job webhook token (HMAC of the job id).
    runpod_token_secret: SecretStr = SecretStr(DEV_RUNPOD_TOKEN_SECRET)
    # Where RunPod reaches our receiver: completion webhooks go to
    # {public_base_url}/webhooks/runpod/{token}.
    public_base_url: str = "http://127.0.0.1:8000"

    receiver_host: str = "127.0.0.1"
    receiver_port: int = 8000
    emulator_port: int = 8010
    max_request_bytes: int = 1_048_576

    # Beat: poll jobs RunPod has been silent about for this long, every poll_interval_s.
    poll_interval_s: float = 5.0
    silent_after_s: float = 10.0
    # Outbox safety net: rows still pending this long are enqueued again.
    outbox_interval_s: float = 10.0
    outbox_after_s: float = 30.0

    worker_concurrency: int = 2
    log_level: str = "INFO"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @model_validator(mode="after")
    def _production_secrets(self) -> "Settings":
        if self.env == "production":
            used = [name for name in ("stripe_webhook_secret", "runpod_api_key", "runpod_token_secret")
                    if getattr(self, name).get_secret_value() in _DEV_SECRETS]
            if any(k.get_secret_value() in _DEV_SECRETS for k in self.api_keys):
                used.append("api_keys")
            if used:
                names = ", ".join("GPUBILL_" + n.upper() for n in used)
                raise ValueError(f"production needs real secrets; set {names}")
            if not self.database_url or not self.broker_url:
                raise ValueError("production needs GPUBILL_DATABASE_URL and GPUBILL_BROKER_URL")
        if not self.api_keys:
            raise ValueError("GPUBILL_API_KEYS is empty")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The ledger URL, defaulting to SQLite under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"

    def api_key_values(self) -> list[str]:
        return [k.get_secret_value() for k in self.api_keys]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
