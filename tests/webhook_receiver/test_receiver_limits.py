"""Issue 15, repro 2 and 5: every body is bounded in depth and size before anything
else runs (auth, the request-log binding, signature checks) — chunked or not."""
from __future__ import annotations

import http.client
import json
import secrets
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from emulators.stripe import events as se
from ledger.db import transaction
from tests.factories import CheckoutSessionFactory, EventFactory
from tests.webhook_receiver.test_receiver_input import counts, error

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/quotes", "/v1/topups", "/webhooks/stripe",
                                  "/webhooks/runpod/" + "0" * 64])
@pytest.mark.parametrize("auth", [True, False])
def test_deeply_nested_bodies_are_400_before_auth(api, sessions, path, auth) -> None:
    before = counts(sessions)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = api.http.headers["Authorization"]
    r = requests.post(f"{api.base}{path}", data='{"user_id": ' + nested(990) + "}",
                      headers=headers, timeout=10)
    assert error(r, 400)["code"] == "invalid_json"
    assert counts(sessions) == before


def test_a_job_whose_input_is_too_deep_is_refused_at_intake(api, sessions) -> None:
    before = counts(sessions)
    user = f"deep-{secrets.token_hex(4)}"
    for depth in (950, 40):
        body = (f'{{"user_id": "{user}", "type": "framing", "params": {{"duration_s": 30}}, '
                f'"input": {{"a": {nested(depth)}}}}}')
        r = api.http.post(f"{api.base}/v1/jobs", data=body, timeout=10,
                          headers={"Content-Type": "application/json"})
        assert error(r, 400)["code"] == "invalid_json", depth
    assert counts(sessions) == before


def test_brackets_inside_strings_do_not_count_as_depth(api) -> None:
    r = api.http.post(f"{api.base}/v1/quotes", timeout=10, json={
        "type": "framing", "params": {"duration_s": 30}, "note": "[" * 500 + '\\"{' * 100})
    assert error(r, 422)["code"] == "invalid_request"  # reached validation: "note" is unknown


def _chunked(path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, dict]:
    url = urlsplit(path)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", url.path, body=iter(chunks), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json", **headers})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def test_chunked_quote_over_a_mebibyte_is_413_not_cut(api) -> None:
    """1 MiB of valid JSON followed by junk: cut at 1 MiB it would parse and answer 200."""
    body = {"type": "framing", "params": {"duration_s": 30}}
    prefix = json.dumps(body).encode()
    prefix = prefix + b" " * (MIB - len(prefix))  # exactly 1 MiB of valid JSON
    status, answer = _chunked(f"{api.base}/v1/quotes", [prefix[:MIB // 2], prefix[MIB // 2:], b"junk" * 256],
                              {"Authorization": api.http.headers["Authorization"]})
    assert status == 413, answer
    assert answer["error"]["code"] == "request_entity_too_large"
    # Exactly 1 MiB, chunked, is within the limit and answered.
    status, answer = _chunked(f"{api.base}/v1/quotes", [prefix[:MIB // 2], prefix[MIB // 2:]],
                              {"Authorization": api.http.headers["Authorization"]})
    assert status == 200, answer


def test_chunked_stripe_event_over_a_mebibyte_is_413_and_never_verified(api, sessions) -> None:
    """The signature is valid over the first MiB: a receiver that cut the body would
    verify that prefix and store the event."""
    before = counts(sessions)
    body = EventFactory()  # a paid checkout.session.completed (pack small)
    raw = json.dumps(body, separators=(",", ":")).encode()
    raw = raw + b" " * (MIB - len(raw))
    headers = {"Stripe-Signature": se.stripe.WebhookSignature.generate_signature_header(raw.decode(), api.secret)}
    status, answer = _chunked(f"{api.base}/webhooks/stripe", [raw, b"   trailing junk"], headers)
    assert status == 413, answer
    assert counts(sessions) == before


def _cursor(value: object) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("params", [
    {"limit": "²"}, {"limit": "①"}, {"limit": "٣"}, {"limit": "1e3"}, {"limit": "9" * 3000},
    {"cursor": _cursor(["2026-01-01T00:00:00", 1, 2 ** 63])},
    {"cursor": _cursor(["2026-01-01T00:00:00", 1, -(2 ** 63) - 1])},
    {"cursor": _cursor(["2026-01-01T00:00:00", 1, 10 ** 1900])},
    {"cursor": "[" * 1000},
    {"cursor": _cursor("[" * 2000)},
    {"cursor": _cursor(["9999-99-99", 1, 1])},
    {"cursor": _cursor(["2026-01-01T00:00:00", True, 1])},
    {"cursor": "é\x00"},
])
def test_hostile_entries_query_is_422_json(api, params) -> None:
    """Repro 3: ``isdigit()`` accepted ``²`` and ``①``, ``int()`` did not; a cursor over
    2⁶³ overflowed the database's BIGINT; thousands of ``[`` overflowed ``json``'s recursion
    (sizes fit gunicorn's 4,094-byte request line)."""
    r = api.http.get(f"{api.base}/v1/wallets/someone/entries", params=params, timeout=10)
    err = error(r, 422)
    assert err["code"] == "invalid_request"
    assert err["fields"][0]["field"] in params


def test_valid_entries_query_still_answers(api) -> None:
    r = api.http.get(f"{api.base}/v1/wallets/someone/entries", params={"limit": "200"}, timeout=10)
    assert r.status_code == 200 and r.json()["entries"] == []
    r = api.http.get(f"{api.base}/v1/wallets/someone/entries", timeout=10,
                     params={"cursor": _cursor(["2026-01-01T00:00:00", 1, 2 ** 63 - 1])})
    assert r.status_code == 200, r.text


def _v1(payload: bytes, secret: str, t: int) -> str:
    return se.stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, t).split(",")[1]


def test_stripe_signature_with_odd_timestamp_items_is_verified_as_the_sdk_reads_it(api, sessions) -> None:
    """Repro 4a: ``v1=<sig>, t=²,t=<t>`` — the SDK reads the exact ``t`` item (the one
    after the comma without a space), and so must the future check: 200, stored once."""
    body = EventFactory()  # a paid checkout.session.completed (pack small)
    payload, headers = se.signed(body, api.secret)
    t = int(headers["Stripe-Signature"].split(",")[0][2:])
    headers["Stripe-Signature"] = f"{_v1(payload, api.secret, t)}, t=²,t={t}"
    r = api.post_stripe_raw(payload, headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "duplicate": False}


def test_duplicated_t_cannot_smuggle_a_future_timestamp_past_the_check(api, sessions) -> None:
    """Repro 4b: ``v1=<sig over t+100000>, t=<now>,t=<t+100000>``: the SDK verifies
    against ``t+100000`` (`` t`` with a space is not its ``t``); the receiver's future
    check read ``<now>`` and let a far-future signature in."""
    import time

    before = counts(sessions)
    body = EventFactory()  # a paid checkout.session.completed (pack small)
    payload, _ = se.signed(body, api.secret)
    now = int(time.time())
    later = now + 100_000
    headers = {"Content-Type": "application/json",
               "Stripe-Signature": f"{_v1(payload, api.secret, later)}, t={now},t={later}"}
    err = error(api.post_stripe_raw(payload, headers), 400)
    assert err["code"] == "invalid_signature"
    assert counts(sessions) == before


def test_a_user_id_with_a_trailing_newline_is_refused_everywhere(api, sessions) -> None:
    """Repro 6: ``client_reference_id="dave\\n"`` credited a wallet ``"dave\\n"`` that
    ``/v1/jobs`` refuses to spend. The receiver refuses it in the URL; the worker parks
    the event instead of crediting anyone."""
    from sqlalchemy import select

    from ledger.models import EventStatus, StripeEvent, Wallet
    from tests.stripe_flows import settle

    user = f"dave-{secrets.token_hex(4)}"
    r = api.http.get(f"{api.base}/v1/wallets/{user}%0A", timeout=10)
    assert error(r, 422)["code"] == "invalid_request"
    event = EventFactory(obj=CheckoutSessionFactory(user=user + "\n", pack="small"))
    assert api.post_event(event).status_code == 200
    assert settle(sessions, [event["id"]]) == {event["id"]: EventStatus.FAILED}
    with transaction(sessions) as s:
        assert "client_reference_id" in s.get(StripeEvent, event["id"]).last_error
        assert s.scalars(select(Wallet).where(Wallet.user_id.like(f"{user}%"))).all() == []


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(items=st.lists(st.sampled_from(["t", " t", "v1", " v1", "v0", "t "]).flatmap(
    lambda k: st.tuples(st.just(k), st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12)
                        | st.sampled_from(["SIG", "NOW", "²", "NOW "]))),
    max_size=5))
def test_generated_signature_headers_never_5xx(api, sessions, items) -> None:
    """Headers built from SDK-ish items around a real signature: 200 or 400, never 5xx,
    and a 200 only when the SDK itself verifies the header."""
    import time

    body = EventFactory()  # a paid checkout.session.completed (pack small)
    payload, _ = se.signed(body, api.secret)
    now = str(int(time.time()))
    sig = _v1(payload, api.secret, int(now)).split("=", 1)[1]
    # HTTP strips a value's outer whitespace; a client cannot send it, so neither do we.
    header = ",".join(f"{k}={v.replace('SIG', sig).replace('NOW', now)}" for k, v in items).strip()
    r = api.post_stripe_raw(payload, {"Content-Type": "application/json", "Stripe-Signature": header})
    assert r.status_code in (200, 400), r.text
    try:
        ok = bool(se.stripe.WebhookSignature.verify_header(payload.decode(), header, api.secret, 300))
    except (se.stripe.SignatureVerificationError, TypeError):  # TypeError: non-ASCII v1
        ok = False
    assert (r.status_code == 200) == ok, (header, r.text)


@FUZZ
@given(limit=st.text(max_size=8), cursor=st.text(max_size=40) | st.binary(max_size=30).map(
    lambda b: __import__("base64").urlsafe_b64encode(b).decode()))
def test_generated_entries_queries_never_5xx(api, limit, cursor) -> None:
    r = api.http.get(f"{api.base}/v1/wallets/someone/entries", params={"limit": limit, "cursor": cursor},
                     timeout=10)
    assert r.status_code in (200, 422), r.text
    assert r.headers["Content-Type"].startswith("application/json")


def test_a_non_ascii_v1_signature_is_400_not_500(api, sessions) -> None:
    """Found by the generated headers: the SDK hands a ``v1=²`` value to
    ``hmac.compare_digest``, which raises ``TypeError`` on non-ASCII strings."""
    import time

    before = counts(sessions)
    body = EventFactory()  # a paid checkout.session.completed (pack small)
    payload, _ = se.signed(body, api.secret)
    r = api.post_stripe_raw(payload, {"Content-Type": "application/json",
                                      "Stripe-Signature": f"t={int(time.time())},v1=²"})
    assert error(r, 400)["code"] == "invalid_signature"
    assert counts(sessions) == before
