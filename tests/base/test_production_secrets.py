"""Repro 1 of issue 15: production accepted ``.env.example`` placeholders and trivial
secrets, and short secrets were never redacted. The placeholders are read from the
repository's own ``.env.example`` (the file operators copy), not restated here."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from base import logs
from base.settings import Settings, production_secret_problems
from tests.base.test_settings import PROD_SECRETS

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = ("stripe_webhook_secret", "runpod_api_key", "runpod_token_secret", "api_keys",
                "stripe_secret_key", "flower_basic_auth", "notify_secret")


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_sourcing_env_example_is_refused_naming_every_secret(monkeypatch) -> None:
    example = env_example()
    for key, value in example.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as err:
        Settings()
    message = str(err.value)
    for name in SECRET_NAMES:
        if "GPUBILL_" + name.upper() in example:
            assert "GPUBILL_" + name.upper() in message, name
    assert "GPUBILL_DATABASE_URL has a placeholder password" in message
    for key, value in example.items():  # a refusal never shows the refused value
        if key.startswith("GPUBILL_") and any(n.upper() in key for n in SECRET_NAMES):
            for part in value.split(","):
                assert part not in message or len(part) < 4, (key, part)


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_every_secret_set_to_x_is_refused(name) -> None:
    with pytest.raises(ValidationError, match="GPUBILL_" + name.upper()):
        Settings(env="production", **{**PROD_SECRETS, name: "x"})


@pytest.mark.parametrize("name,value", [
    ("stripe_webhook_secret", "whsec_" + "a" * 31),   # one short of Stripe's shape
    ("stripe_webhook_secret", "a" * 40),              # no whsec_ prefix
    ("stripe_webhook_secret", "whsec_..."),
    ("api_keys", "k" * 31),
    ("api_keys", "k1" + "a" * 40 + ",app-key-2"),     # one bad key among good ones
    ("runpod_token_secret", "long-random-string"),
    ("notify_secret", "long-random-string-for-app-webhooks"),
    ("flower_basic_auth", "ops:change-me-too"),
    ("flower_basic_auth", "ops:" + "p" * 15),
    ("flower_basic_auth", "p" * 40),                  # no user
    ("runpod_api_key", "rpa_..."),
    ("stripe_secret_key", "sk_live_..."),
    ("database_url", "postgresql+psycopg://gpubill:change-me@postgres:5432/gpubill"),
])
def test_placeholders_and_short_secrets_are_refused(name, value) -> None:
    with pytest.raises(ValidationError, match="GPUBILL_" + name.upper()):
        Settings(env="production", **{**PROD_SECRETS, name: value})


def test_minimum_lengths_are_accepted_exactly() -> None:
    cfg = Settings(env="production", **{**PROD_SECRETS, "stripe_webhook_secret": "whsec_" + "a" * 32,
                                        "api_keys": "k" * 32, "flower_basic_auth": "ops:" + "p" * 16})
    assert production_secret_problems(cfg) == []


def test_development_keeps_its_defaults() -> None:
    assert Settings(env="development").api_key_values() == ["gpubill_dev_api_key"]


def test_short_secrets_are_redacted_too() -> None:
    """Secrets under 6 characters were never redacted (only possible outside production)."""
    cfg = Settings(env="test", api_keys="q7", notify_secret="zz9", runpod_token_secret="t0k")
    logs.add_secrets(logs.secret_values(cfg))
    line = logs.JsonLines().format(logging.makeLogRecord(
        {"msg": "key=q7 notify=zz9 token=t0k", "levelname": "INFO", "name": "t"}))
    assert "q7" not in line and "zz9" not in line and "t0k" not in line
    assert line.count(logs.REDACTED) == 3
