"""Structured logs for every process: one JSON object per line (python-json-logger) with
the ids of the work in hand — ``job_id``, ``event_id``, ``user_id``, ``task``,
``task_id`` — or human-readable text when the stream is a terminal.

Ids are bound to a context variable (``bind``/``bound``) by the receiver per request
and by the worker per task (``worker.observability``), and a filter copies them onto
every record, so library and application lines alike carry them. Code inside a task or
request may add ids (``logs.bind(user_id=...)``): they end with the task or request. Every formatted line
passes through ``redact``: configured secret values, Stripe keys and webhook secrets,
bearer tokens, RunPod webhook tokens and card numbers never reach a log.
"""
from __future__ import annotations

import logging
import logging.config
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("job_id", "event_id", "user_id", "task", "task_id")
_context: ContextVar[dict[str, str]] = ContextVar("gpubill_log_context")  # read with .get({})

REDACTED = "[redacted]"
_PATTERNS = [
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+"),    # Stripe API keys
    re.compile(r"\bwhsec_[A-Za-z0-9_]+"),                         # Stripe webhook secrets
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),            # Authorization headers
    re.compile(r"(?<=/webhooks/runpod/)[0-9a-f]{64}"),            # per-job webhook tokens
]
# 13-19 digits, optionally grouped by spaces or dashes; redacted only if Luhn-valid.
_CARD = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")
_secrets: set[str] = set()
_longest_first: tuple[str, ...] = ()  # _secrets ordered once, not per log line


# -- context -------------------------------------------------------------------------------
def bind(**ids: Any) -> Token[dict[str, str]]:
    """Add ids (None values are skipped) to the current log context; returns the token
    for ``unbind``."""
    new = {k: str(v) for k, v in ids.items() if v is not None and v != ""}
    return _context.set({**_context.get({}), **new})


def unbind(token: Token[dict[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """``with bound(job_id=...):`` — the ids are on every log line inside the block."""
    token = bind(**ids)
    try:
        yield
    finally:
        unbind(token)


def current() -> dict[str, str]:
    return dict(_context.get({}))


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (an explicit ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get({}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# -- redaction -----------------------------------------------------------------------------
def add_secrets(values: Iterable[str]) -> None:
    """Register secret values (API keys, webhook secrets, passwords) to blank out of
    every log line, whatever their length: a short secret is still a secret (production
    refuses short ones, ``base.secret_rules``; elsewhere a short one costs some
    over-redaction, never a leak)."""
    global _longest_first
    _secrets.update(v for v in values if v)
    _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", m.group(0))
    return REDACTED if _luhn(digits) else m.group(0)


def redact(text: str) -> str:
    """``text`` with secrets, tokens and card numbers replaced by ``[redacted]``."""
    for value in _longest_first:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _CARD.sub(_card, text)


def iso_time(record: logging.LogRecord) -> str:
    """The record's time as ISO 8601 in UTC with its zone and milliseconds,
    ``2026-12-01T19:53:16.991+00:00`` (RFC 3339), whatever the host's zone."""
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


class JsonLines(JsonFormatter):
    """``{"time", "level", "logger", "message", "process", ids...}`` one per line, redacted."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger",
                                            "asctime": "time", "processName": "process"})
        super().__init__("%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s", **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class Text(logging.Formatter):
    """``time LEVEL logger [ids] message`` for people at a terminal, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(ids)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if hasattr(record, k))
        record.ids = f" [{ids}]" if ids else ""
        return redact(super().format(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record)


def formatter_class(fmt: str, stream: TextIO | None = None) -> type[logging.Formatter]:
    """``JsonLines`` or ``Text``; ``auto`` picks text only when ``stream`` is a terminal."""
    if fmt == "auto":
        fmt = "text" if (stream or sys.stderr).isatty() else "json"
    return Text if fmt == "text" else JsonLines


def dict_config(fmt: str = "auto", level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: one stderr handler on the root logger with
    the context filter; gunicorn's loggers propagate to it (usable as gunicorn's
    ``logconfig_dict``)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"gpubill": {"()": formatter_class(fmt)}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "gpubill", "filters": ["context"]}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # gunicorn's access line has no ids; the receiver logs its own ``request`` line.
        "loggers": {"gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
                    "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True}},
    }


def configure(settings: Any = None) -> None:
    """Configure this process's logging from settings (``log_format``, ``log_level``)
    and register its secrets for redaction."""
    if settings is None:
        from base.settings import get_settings

        settings = get_settings()
    add_secrets(secret_values(settings))
    logging.config.dictConfig(dict_config(settings.log_format, settings.log_level))


def secret_values(settings: Any) -> list[str]:
    """Every secret value in ``settings`` (SecretStr fields, the API keys, the password
    inside database and broker URLs)."""
    values: list[str] = []
    for name, value in settings:
        if hasattr(value, "get_secret_value"):
            values.append(value.get_secret_value())
            if name == "flower_basic_auth":  # "user:password": the password alone too
                values.append(value.get_secret_value().partition(":")[2])
        elif isinstance(value, list):
            values += [v.get_secret_value() for v in value if hasattr(v, "get_secret_value")]
        elif isinstance(value, str) and name.endswith("_url") and (
                m := re.match(r"^[a-z0-9+]+://[^:/@]*:([^@/]+)@", value)):
            values.append(m.group(1))
    return values
