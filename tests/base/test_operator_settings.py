"""Operator settings (issue 5): Flower's basic auth is a secret like the others."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from base import logs
from base.settings import DEV_FLOWER_BASIC_AUTH, Settings
from tests.base.test_settings import PROD_SECRETS


def test_production_refuses_the_development_flower_password() -> None:
    with pytest.raises(ValidationError, match="GPUBILL_FLOWER_BASIC_AUTH"):
        Settings(env="production", **{**PROD_SECRETS, "flower_basic_auth": DEV_FLOWER_BASIC_AUTH})


def test_every_secret_setting_is_redacted_from_logs() -> None:
    cfg = Settings(env="test", flower_basic_auth="ops:pw-123456",
                   database_url="postgresql+psycopg://gpubill:db-pass-987@db/gpubill")
    values = logs.secret_values(cfg)
    assert "pw-123456" in values and "db-pass-987" in values
    assert cfg.stripe_webhook_secret.get_secret_value() in values
    assert all(k in values for k in cfg.api_key_values())
