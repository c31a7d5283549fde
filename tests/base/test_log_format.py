"""base.logs: redaction of secrets, tokens and card numbers; JSON lines off a
terminal, text on one (a real pseudo-terminal)."""
from __future__ import annotations

import io
import json
import logging
import os

from base import logs


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args, None)


def test_redact_blanks_secrets_tokens_and_card_numbers() -> None:
    logs.add_secrets(["s3cret-value-123"])
    text = logs.redact("key s3cret-value-123 whsec_abc sk_live_XYZ Bearer abc.def "
                       f"/webhooks/runpod/{'a' * 64} card 4242 4242 4242 4242 / 4000-0566-5566-5556")
    assert "s3cret" not in text and "whsec_" not in text and "sk_live" not in text
    assert "abc.def" not in text and "a" * 64 not in text
    assert "4242" not in text and "5556" not in text
    assert text.count(logs.REDACTED) == 7


def test_redact_keeps_ids_amounts_and_timestamps() -> None:
    text = "job_0123 charged 1234 credits at 1763700000001 ms, 2026-11-21 05:57:52"
    assert logs.redact(text) == text  # 1763700000001 is not Luhn-valid


def test_json_line_carries_bound_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonLines())
    handler.addFilter(logs.ContextFilter())
    with logs.bound(job_id="job_1", user_id="u-1", event_id=None):
        handler.handle(_record("held %d credits", 12))
    line = json.loads(stream.getvalue())
    assert line["message"] == "held 12 credits" and line["level"] == "INFO"
    assert line["job_id"] == "job_1" and line["user_id"] == "u-1" and "event_id" not in line
    assert logs.current() == {}


def test_text_on_a_terminal_json_elsewhere() -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as tty, os.fdopen(leader, "rb", buffering=0):
        assert logs.formatter_class("auto", tty) is logs.Text
    assert logs.formatter_class("auto", io.StringIO()) is logs.JsonLines
    assert logs.formatter_class("text", io.StringIO()) is logs.Text
    with logs.bound(job_id="job_9"):
        record = _record("hello")
        logs.ContextFilter().filter(record)
        assert "[job_id=job_9] hello" in logs.Text().format(record)
