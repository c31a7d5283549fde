"""Settings fail fast with a clear message; development defaults never reach production."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from base.settings import Settings

# Shaped like real production secrets (lengths of base.secret_rules), none a default.
PROD_SECRETS = {
    "stripe_webhook_secret": "whsec_" + "R" * 32, "runpod_api_key": "rpa_" + "R" * 40,
    "runpod_token_secret": "t" * 43, "api_keys": "k1" + "a" * 40 + ",k2" + "b" * 40,
    "stripe_secret_key": "sk_live_" + "R" * 99,
    "database_url": "postgresql://db/gpubill", "broker_url": "redis://r:6379/0",
    "flower_basic_auth": "ops:" + "p" * 20,
    "notify_secret": "whsec_" + "n" * 40,
    "metrics_token": "m" * 40,
    "stripe_livemode": True,  # agrees with the sk_live_ key (issue 12)
}


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ValidationError, match="GPUBILL_STRIPE_WEBHOOK_SECRET"):
        Settings(env="production", **{**PROD_SECRETS, "stripe_webhook_secret": "whsec_gpubill_dev_secret"})
    with pytest.raises(ValidationError, match="GPUBILL_API_KEYS"):
        Settings(env="production", **{**PROD_SECRETS, "api_keys": "gpubill_dev_api_key"})


def test_production_needs_real_database_and_broker() -> None:
    with pytest.raises(ValidationError, match="GPUBILL_DATABASE_URL"):
        Settings(env="production", **{**PROD_SECRETS, "database_url": ""})


def test_production_with_everything_set() -> None:
    cfg = Settings(env="production", **PROD_SECRETS)
    assert cfg.api_key_values() == ["k1" + "a" * 40, "k2" + "b" * 40]
    assert cfg.sqlalchemy_url == "postgresql://db/gpubill"


def test_embedded_default_is_sqlite_under_the_data_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("GPUBILL_DATABASE_URL", raising=False)
    cfg = Settings(data_dir=tmp_path)
    assert cfg.sqlalchemy_url == f"sqlite:///{tmp_path / 'ledger.db'}"


def test_keys_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("GPUBILL_API_KEYS", " a , b,")
    assert Settings().api_key_values() == ["a", "b"]
    monkeypatch.setenv("GPUBILL_API_KEYS", "")
    with pytest.raises(ValidationError, match="empty"):
        Settings()


def test_production_refuses_the_development_stripe_key() -> None:
    with pytest.raises(ValidationError, match="GPUBILL_STRIPE_SECRET_KEY"):
        Settings(env="production", **{**PROD_SECRETS, "stripe_secret_key": "sk_test_gpubill_dev"})


def test_production_refuses_the_development_notify_secret() -> None:
    with pytest.raises(ValidationError, match="GPUBILL_NOTIFY_SECRET"):
        Settings(env="production", **{**PROD_SECRETS, "notify_secret": "whsec_gpubill_dev_notify_secret"})
