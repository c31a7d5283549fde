"""``gpubill.client`` against the whole stack (issue 16): an idempotent submit, the
receipt, the wallet, a top-up session, and the outbound notification's signature
verified as the app would (and a tampered one refused)."""
from __future__ import annotations

import secrets

import pytest

from gpubill.client import ApiError, GpubillClient, SignatureError, verify_notification
from pricing import load_packs
from tests.helpers import Api, wait_for
from tests.model import rates as model

pytestmark = pytest.mark.e2e


def test_the_client_drives_a_job_and_verifies_its_notification(stack, notify_sink) -> None:
    cfg = stack.settings
    app = GpubillClient(stack.receiver_url, cfg.api_key_values()[0])
    user = Api(stack).funded_user("client")
    small = load_packs()["small"].credits
    assert app.wallet(user).available == small
    key = f"export-{secrets.token_hex(4)}"
    params = {"duration_s": 30, "resolution": "1080p"}
    first = app.submit_job(user, "framing", params, {"emulator": {"execution_ms": 400}}, idempotency_key=key)
    again = app.submit_job(user, "framing", params, {"emulator": {"execution_ms": 400}}, idempotency_key=key)
    assert again.job_id == first.job_id
    with pytest.raises(ApiError) as other_body:
        app.submit_job(user, "overlay", params, {}, idempotency_key=key)
    assert other_body.value.status == 409
    receipt = app.wait_for_receipt(first.job_id, timeout_s=60)
    # the stand-in measures the run (>= the scripted 400 ms); the price is the card's
    assert receipt.status == "completed" and receipt.runpod.execution_ms >= 400
    expected = model.charge(model.quote("framing", 30), receipt.runpod.execution_ms)
    assert receipt.charge == expected and app.wallet(user).balance == small - expected

    delivery = wait_for(lambda: notify_sink.for_job(first.job_id), 30, "the job.completed notification")[0]
    event = verify_notification(delivery.raw, delivery.signature, cfg.notify_secret.get_secret_value())
    assert event["type"] == "job.completed" and event["data"]["object"]["job_id"] == first.job_id
    with pytest.raises(SignatureError):
        verify_notification(delivery.raw.replace(b"completed", b"c0mpleted"), delivery.signature,
                            cfg.notify_secret.get_secret_value())
    with pytest.raises(SignatureError):
        verify_notification(delivery.raw, delivery.signature, "whsec_not_the_secret")

    topup = app.create_topup(user, "small", idempotency_key=f"t-{key}")
    assert topup.session_id.startswith("cs_") and topup.pack.credits == small
    assert app.create_topup(user, "small", idempotency_key=f"t-{key}").session_id == topup.session_id
