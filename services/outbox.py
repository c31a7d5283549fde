"""The outbox registry's entry type: which committed rows the outbox sweeper
(``services.sweeps.pending_outbox``) publishes again, and to which task.

Every task that a commit makes due is published after that commit
(``base.after_commit``); a publish can still be lost (broker down, process killed), so
each kind of row that waits for a task declares an ``Outbox`` entry next to the code
that owns its state: ``services.lifecycle.OUTBOX`` (dispatch, holding first),
``services.stops.OUTBOX`` (cancel), ``services.runpod_jobs.OUTBOX`` (a stray's cancel),
``services.stripe_events.OUTBOX`` (process), ``services.notifications.OUTBOX`` (send).
The sweeper knows no status and no task name of its own.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import InstrumentedAttribute


@dataclass(frozen=True, slots=True)
class Outbox:
    """Rows of ``model`` matching ``pending(cutoff)`` — committed before ``cutoff``
    (naive UTC) and not moved on since — are handed out as ``task(*args)`` (the
    columns ``args``, read from the row, as strings).

    ``tries`` / ``due_at``: the row's backoff columns. A row is handed out only when
    ``due_at`` is null or past; each hand-out sets ``due_at`` to now +
    ``sweeps.republish_after_s(tries + 1, …)``. ``counted``: the sweep also counts the
    hand-out in ``tries`` (``republishes``); False when the task counts its own
    attempts there (a notification's ``attempts``)."""

    task: str
    model: type[Any]
    pending: Callable[[datetime], ColumnElement[bool]]
    args: tuple[InstrumentedAttribute[Any], ...]
    tries: InstrumentedAttribute[int]
    due_at: InstrumentedAttribute[Any]
    counted: bool = True
