"""Issue 12, case 6: production refuses a Stripe key whose mode disagrees with
GPUBILL_STRIPE_LIVEMODE (a live key with livemode=false ignored every live event)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from gpubill.settings import Settings
from tests.unit.test_settings import PROD_SECRETS


@pytest.mark.parametrize("key,livemode", [("sk_live_real", False), ("rk_live_real", False),
                                          ("sk_test_real", True), ("rk_test_real", True)])
def test_production_key_mode_must_match_livemode(key: str, livemode: bool) -> None:
    with pytest.raises(ValidationError, match="GPUBILL_STRIPE_LIVEMODE"):
        Settings(env="production", **{**PROD_SECRETS, "stripe_secret_key": key, "stripe_livemode": livemode})


@pytest.mark.parametrize("key,livemode", [("sk_live_real", True), ("rk_test_real", False)])
def test_production_key_mode_agreeing_starts(key: str, livemode: bool) -> None:
    cfg = Settings(env="production", **{**PROD_SECRETS, "stripe_secret_key": key, "stripe_livemode": livemode})
    assert cfg.stripe_livemode is livemode


def test_production_refuses_a_key_of_no_known_mode() -> None:
    with pytest.raises(ValidationError, match="sk_live_"):
        Settings(env="production", **{**PROD_SECRETS, "stripe_secret_key": "pk_live_oops"})
