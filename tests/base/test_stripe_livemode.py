"""Issue 12, case 6: production refuses a Stripe key whose mode disagrees with
GPUBILL_STRIPE_LIVEMODE (a live key with livemode=false ignored every live event)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from base.settings import Settings
from tests.base.test_settings import PROD_SECRETS

REAL = "R" * 99  # long enough for the production secret rules (issue 15)


@pytest.mark.parametrize("key,livemode", [("sk_live_" + REAL, False), ("rk_live_" + REAL, False),
                                          ("sk_test_" + REAL, True), ("rk_test_" + REAL, True)])
def test_production_key_mode_must_match_livemode(key: str, livemode: bool) -> None:
    with pytest.raises(ValidationError, match="GPUBILL_STRIPE_LIVEMODE"):
        Settings(env="production", **{**PROD_SECRETS, "stripe_secret_key": key, "stripe_livemode": livemode})


@pytest.mark.parametrize("key,livemode", [("sk_live_" + REAL, True), ("rk_test_" + REAL, False)])
def test_production_key_mode_agreeing_starts(key: str, livemode: bool) -> None:
    cfg = Settings(env="production", **{**PROD_SECRETS, "stripe_secret_key": key, "stripe_livemode": livemode})
    assert cfg.stripe_livemode is livemode


def test_production_refuses_a_key_of_no_known_mode() -> None:
    with pytest.raises(ValidationError, match="sk_live_"):
        Settings(env="production", **{**PROD_SECRETS, "stripe_secret_key": "pk_live_" + REAL})
