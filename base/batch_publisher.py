"""Publishing after the answer, in batches: request threads hand over the ids of rows
they have committed; one background thread per process publishes everything handed over
while its previous publish was in flight as **one** task message ``task_name(*ids)``.

Why: Celery ``send_task`` was about half of the receiver's CPU per Stripe event
(docs/decisions.md "Webhook intake"). After the first id of a batch arrives, the thread
lingers up to ``linger_s`` (default 20 ms, as Kafka producers' ``linger.ms``) for more,
so under load one message carries many ids and the cost per event falls with the load;
an idle id goes out alone, 20 ms after its answer.

The receiver's after-commit publish function (``webhook_receiver.resources.publisher``,
installed by ``base.after_commit``) hands it the ids the Stripe view queued with
``publish_after_commit``. The guarantee is the synchronous publish's: the row is
committed before its id is handed over, and an id that is never published (broker down, process killed before the thread
ran) leaves its row pending, which the outbox sweeper (``maintenance.sweep_outbox``)
publishes again. Tasks are idempotent, so an id published twice is harmless.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time

from celery import Celery

from base import queues

log = logging.getLogger(__name__)

_STOP = object()


class BatchPublisher:
    """Publishes ``task_name(*ids)`` for ids given to ``submit``, at most ``max_batch``
    ids per message, each batch at most ``linger_s`` seconds after its first id, from a
    thread started on first use in each process (so it works under gunicorn's forking
    workers)."""

    def __init__(self, app: Celery, task_name: str, max_batch: int = 100, linger_s: float = 0.02) -> None:
        self._app, self._task, self._max, self._linger = app, task_name, max_batch, linger_s
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, item_id: str) -> None:
        """Hand over ``item_id`` (its row already committed); returns at once."""
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            self._start()
        self._queue.put(item_id)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            if self._pid != os.getpid():  # a forked child: the parent's queue is not ours
                self._queue = queue.SimpleQueue()
                atexit.register(self.close)
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name=f"publish-{self._task}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            until = time.monotonic() + self._linger
            while len(batch) < self._max and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            stop = _STOP in batch
            ids = list(dict.fromkeys(i for i in batch if isinstance(i, str)))  # a duplicate delivery
            if ids:
                try:
                    queues.enqueue(self._app, self._task, *ids)  # logs and returns False on failure
                except Exception:  # never let the thread die; the sweeper has the rows
                    log.exception("publishing %s for %d ids failed", self._task, len(ids))
            if stop:
                return

    def close(self, timeout: float = 3.0) -> None:
        """Publish what is handed over already, then stop the thread (at process exit)."""
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            self._queue.put(_STOP)
            thread.join(timeout)
