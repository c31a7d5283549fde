"""The one settings object (pydantic-settings, env prefix ``GPUBILL_``), validated at start.

Embedded defaults need no servers: a SQLite ledger under ``data_dir``, a broker that the
launcher starts itself, the RunPod stand-in. In ``env=production`` every secret must be
set explicitly: development defaults, ``.env.example`` placeholders and secrets under
their minimum length are refused (``production_secret_problems``,
``base.secret_rules``), so a missing or guessable secret fails fast.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from base import secret_rules

# Development-only secrets: known values so the demo and tests can sign requests.
DEV_API_KEY = "gpubill_dev_api_key"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_gpubill_dev_secret"
DEV_RUNPOD_API_KEY = "rp_emulator_key"
DEV_RUNPOD_TOKEN_SECRET = "gpubill_dev_runpod_token_secret"
DEV_FLOWER_BASIC_AUTH = "gpubill:gpubill_dev_flower"
_DEV_SECRETS = {DEV_API_KEY, DEV_STRIPE_WEBHOOK_SECRET, DEV_RUNPOD_API_KEY, DEV_RUNPOD_TOKEN_SECRET,
                DEV_FLOWER_BASIC_AUTH}
DEV_STRIPE_SECRET_KEY = "sk_test_gpubill_dev"  # the Stripe stand-in accepts it
_DEV_SECRETS.add(DEV_STRIPE_SECRET_KEY)
DEV_NOTIFY_SECRET = "whsec_gpubill_dev_notify_secret"  # signs outbound job webhooks (issue 4)
_DEV_SECRETS.add(DEV_NOTIFY_SECRET)
DEV_METRICS_TOKEN = "gpubill_dev_metrics_token"  # GET /metrics bearer token (issue 16)
_DEV_SECRETS.add(DEV_METRICS_TOKEN)


class Settings(BaseSettings):
    """All configuration. Units: seconds unless a name says ``_ms``; URLs as strings."""

    # hide_input_in_errors: a refused setting's error must not print the secrets given.
    model_config = SettingsConfigDict(env_prefix="GPUBILL_", extra="ignore", hide_input_in_errors=True)

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
    # Stripe-Signature tolerance, seconds (Stripe's default, docs/architecture.md).
    stripe_tolerance_s: int = 300
    # Outbound Stripe API (issue 3): secret key, base address (the Stripe stand-in by
    # default; https://api.stripe.com in production), the SDK's retries of network errors
    # and 409/429/5xx answers, Checkout return URLs ({CHECKOUT_SESSION_ID} is Stripe's).
    stripe_secret_key: SecretStr = SecretStr(DEV_STRIPE_SECRET_KEY)
    stripe_api_base: str = "http://127.0.0.1:8011"
    stripe_emulator_port: int = 8011
    stripe_max_network_retries: int = 2
    stripe_success_url: str = "http://127.0.0.1:8000/topups/done?session_id={CHECKOUT_SESSION_ID}"
    stripe_cancel_url: str = "http://127.0.0.1:8000/topups/cancelled"
    # A refund/dispute/invoice whose top-up or customer is not known yet is retried
    # (backoff from stripe_retry_base_s, doubling, capped at 60 s; then the outbox
    # sweeper's re-publishes, capped at 600 s) and parked only once it had at least
    # stripe_pending_attempts attempts AND waited stripe_pending_window_s: as long as
    # Stripe itself keeps retrying a delivery ("up to three days", docs.stripe.com/webhooks).
    stripe_pending_attempts: int = 8
    stripe_retry_base_s: float = 1.0
    stripe_pending_window_s: float = 3 * 24 * 3600.0
    # Subscription plans (Stripe price id → monthly credits); empty → pricing/plans.toml.
    plans_file: Path | None = None

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
    # Request bodies: at most this many bytes (413) and this JSON nesting depth (400),
    # chunked or not (webhook_receiver.bodies).
    max_request_bytes: int = 1_048_576
    max_json_depth: int = Field(default=32, ge=4, le=200)
    # Abuse limits on /v1 (webhook_receiver.ratelimit, Flask-Limiter syntax): requests per
    # API key, and 401 answers per client address before it is locked out; counters in
    # rate_limit_storage_url (empty: the broker when it is Redis — production and `up` —, memory otherwise).
    rate_limit_api: str = "1200/minute"
    rate_limit_auth_failures: str = "60/minute"
    rate_limit_storage_url: str = ""

    # Beat: poll jobs RunPod has been silent about for this long, every poll_interval_s.
    poll_interval_s: float = 5.0
    silent_after_s: float = 10.0
    # Outbox safety net: rows still pending this long are enqueued again.
    outbox_interval_s: float = 10.0
    outbox_after_s: float = 30.0

    # Job lifecycle (issue 4). The silent-job poller backs off: the n-th poll of a job
    # waits silent_after_s * 2**n, at most poll_max_interval_s.
    poll_max_interval_s: float = 60.0
    # Beat sweeps holds past expires_at (DB time) this often.
    expiry_interval_s: float = 30.0
    # RunPod calls: per-request timeout; dispatch retries of 429/5xx/timeouts (backoff
    # with full jitter from retry_backoff_s, doubling, capped at 60 s).
    runpod_timeout_s: float = 10.0
    dispatch_max_retries: int = Field(default=6, ge=0, le=20)
    # Issue 11/17: /status reads of one job at most one per this window, leading edge first.
    runpod_coalesce_s: float = Field(default=2.0, ge=0, le=60)
    retry_backoff_s: float = Field(default=1.0, gt=0)
    # Outbound webhooks to the app about terminal job states; empty URL = not sent
    # (rows are kept, status "skipped"). Signed like Stripe (t=…,v1=HMAC-SHA256).
    notify_url: str = ""
    notify_secret: SecretStr = SecretStr(DEV_NOTIFY_SECRET)
    notify_timeout_s: float = 5.0
    notify_max_retries: int = Field(default=8, ge=0, le=30)

    worker_concurrency: int = 2
    log_level: str = "INFO"
    # Operators (issue 5): log lines as JSON, or text; auto = text on a terminal only.
    log_format: Literal["auto", "json", "text"] = "auto"
    # Flower (gpubill up / compose): "user:password" for its basic auth, and its port.
    flower_basic_auth: SecretStr = SecretStr(DEV_FLOWER_BASIC_AUTH)
    flower_port: int = 5555
    # gpubill up's embedded broker port (6380: next to a system Redis on 6379).
    broker_port: int = 6380
    # Bearer token for GET /metrics (Prometheus: scrape_config ``authorization``);
    # /metrics carries revenue totals, so it is never public (docs/operating.md).
    metrics_token: SecretStr = SecretStr(DEV_METRICS_TOKEN)
    # Nightly reconciliation (issue 5): beat runs `maintenance.reconcile` at this UTC
    # hour:minute; its DB lease outlives a run by far (a crashed run frees it then).
    reconcile_hour: int = Field(default=3, ge=0, le=23)
    reconcile_minute: int = Field(default=17, ge=0, le=59)
    reconcile_lease_s: float = 3600.0
    # Producers' task-sent events let Flower show tasks still waiting in a queue; they
    # cost a Redis PUBLISH per enqueue, ~20% of webhook intake throughput (benchmarks/
    # webhook_intake.py). Workers' own events show every task either way.
    task_sent_events: bool = True
    # gunicorn worker processes of the receiver (gpubill.gunicorn_conf; 4 threads each).
    receiver_workers: int = 2
    # A Celery worker serves its own /metrics on this port when > 0 (compose: one
    # container per queue); gpubill up leaves it 0 and the receiver's /metrics has all.
    worker_metrics_port: int = 0

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @model_validator(mode="after")
    def _stripe_key_mode(self) -> Settings:
        """Issue 12, case 6: in production the Stripe secret key's mode (``sk_live_`` /
        ``rk_live_`` live, ``sk_test_`` / ``rk_test_`` test — https://docs.stripe.com/keys)
        must agree with ``GPUBILL_STRIPE_LIVEMODE``, else every live event would be
        ignored (or test events credited). Raises ``ValueError`` naming both."""
        if self.env != "production":
            return self
        key = self.stripe_secret_key.get_secret_value()
        live = key.startswith(("sk_live_", "rk_live_"))
        if not live and not key.startswith(("sk_test_", "rk_test_")):
            raise ValueError("GPUBILL_STRIPE_SECRET_KEY must be an sk_live_/rk_live_/sk_test_/rk_test_ key")
        if live != self.stripe_livemode:
            raise ValueError(f"GPUBILL_STRIPE_SECRET_KEY is a {'live' if live else 'test'}-mode key but "
                             f"GPUBILL_STRIPE_LIVEMODE={str(self.stripe_livemode).lower()}; make them agree")
        return self

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.env == "production":
            problems = production_secret_problems(self)
            if problems:
                raise ValueError("production needs real secrets: " + "; ".join(problems))
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


def production_secret_problems(cfg: Settings) -> list[str]:
    """``GPUBILL_NAME <why>`` for every secret production must refuse (rules and minimum
    lengths in ``base.secret_rules``); empty when all are acceptable."""
    found: list[tuple[str, str | None]] = [
        ("stripe_webhook_secret", secret_rules.problem(
            cfg.stripe_webhook_secret.get_secret_value(), dev=_DEV_SECRETS,
            prefix=secret_rules.STRIPE_WEBHOOK_PREFIX)),
        ("flower_basic_auth", secret_rules.basic_auth_problem(
            cfg.flower_basic_auth.get_secret_value(), dev=_DEV_SECRETS)),
        ("database_url", secret_rules.url_password_problem(cfg.database_url)),
        ("broker_url", secret_rules.url_password_problem(cfg.broker_url)),
    ]
    found += [(name, secret_rules.problem(getattr(cfg, name).get_secret_value(), dev=_DEV_SECRETS))
              for name in ("runpod_api_key", "runpod_token_secret", "stripe_secret_key", "notify_secret",
                           "metrics_token")]
    found += [("api_keys", secret_rules.problem(k.get_secret_value(), dev=_DEV_SECRETS))
              for k in cfg.api_keys]
    seen: dict[str, str] = {}
    for name, why in found:
        if why is not None:
            seen.setdefault(name, why)  # one reason per setting; never the value itself
    return [f"GPUBILL_{name.upper()} {why}" for name, why in seen.items()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
