"""``base.batch_publisher`` against a real broker of the test's own: ids handed over
in a burst come out as fewer messages carrying every id exactly once, an idle id goes
out alone, and a broker outage neither blocks ``submit`` nor kills the thread."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kombu import Connection, Queue

from base import after_commit, queues
from base.after_commit import publish_after_commit
from base.batch_publisher import BatchPublisher
from gpubill.broker import EmbeddedBroker
from ledger.db import make_engine, make_sessionmaker, transaction
from tests.helpers import wait_for
from webhook_receiver.resources import publisher as receiver_publisher

pytestmark = pytest.mark.integration

TASK = queues.PROCESS_STRIPE_EVENT


@pytest.fixture
def broker(tmp_path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def publisher(broker) -> Iterator[BatchPublisher]:
    """A batch publisher of ``stripe.process_event`` (100 ids a message) to ``broker``."""
    producer = queues.producer(broker.url)
    publisher = BatchPublisher(producer, TASK, max_batch=100)
    try:
        yield publisher
    finally:
        publisher.close()
        producer.close()


def _messages(url: str, want_ids: int, timeout_s: float = 20,
              queue: str = queues.STRIPE) -> list[tuple[str, list[str]]]:
    """(task name, args) of the messages on ``queue`` until ``want_ids`` ids
    have arrived (or the timeout), consumed with kombu as a worker would."""
    got: list[tuple[str, list[str]]] = []

    def on_message(body, message) -> None:
        args, kwargs, _embed = body  # Celery task protocol 2
        got.append((message.headers["task"], list(args)))
        message.ack()

    deadline = time.monotonic() + timeout_s
    with Connection(url) as conn, conn.Consumer(Queue(queue), callbacks=[on_message], accept=["json"]):
        while sum(len(a) for _, a in got) < want_ids and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.5)
            except TimeoutError:
                pass
    return got


def test_a_burst_is_published_in_fewer_messages_each_id_exactly_once(broker, publisher) -> None:
    ids = [f"evt_burst{i}" for i in range(1000)]
    for i in ids:
        publisher.submit(i)
    got = _messages(broker.url, len(ids))
    assert {name for name, _ in got} == {TASK}
    published = [i for _, args in got for i in args]
    assert sorted(published) == sorted(ids)  # every id, none twice
    assert len(got) < len(ids) / 2  # batched
    assert max(len(args) for _, args in got) <= 100
    print(f"\n1000 ids in {len(got)} messages")


def test_an_idle_id_goes_out_alone(broker, publisher) -> None:
    publisher.submit("evt_alone")
    assert _messages(broker.url, 1) == [(TASK, ["evt_alone"])]


def test_a_broker_outage_neither_blocks_submit_nor_stops_the_thread(broker, publisher, caplog) -> None:
    publisher.submit("evt_before")
    assert _messages(broker.url, 1) == [(TASK, ["evt_before"])]
    broker.stop()
    started = time.monotonic()
    publisher.submit("evt_during")  # its row would stay pending for the outbox sweeper
    assert time.monotonic() - started < 0.5  # the request thread does not wait on the broker
    # The thread's publish of evt_during has failed (``queues.enqueue`` logs it) before the
    # broker comes back: the thread must have lived through a failure, not just waited.
    wait_for(lambda: any("evt_during" in r.getMessage() and "failed" in r.getMessage()
                         for r in caplog.records), 30, "the failed publish of evt_during")
    restarted = EmbeddedBroker(broker.data_dir, port=broker.port).start()
    try:
        publisher.submit("evt_after")
        arrived = [i for _, args in _messages(restarted.url, 1) for i in args]
        assert "evt_after" in arrived
    finally:
        restarted.stop()


def test_the_receivers_after_commit_publisher_batches_stripe_ids_and_sends_the_rest_alone(
        broker, publisher, new_database) -> None:
    """``webhook_receiver.resources.publisher`` installed on a real database's sessions:
    Stripe event ids queued with ``publish_after_commit`` reach the broker through the
    batch publisher (fewer messages), each once; another task goes out at once as its
    own message; a rolled-back queue sends nothing."""
    engine = make_engine(new_database())
    factory = make_sessionmaker(engine)
    after_commit.install(factory, receiver_publisher(queues.producer(broker.url), publisher))
    ids = [f"evt_commit{i}" for i in range(200)]
    with transaction(factory) as s:  # one commit hands all over at once: batched for sure
        for event_id in ids:
            publish_after_commit(s, TASK, event_id)
    with pytest.raises(RuntimeError), transaction(factory) as s:
        publish_after_commit(s, TASK, "evt_rolled_back")
        raise RuntimeError("the view failed")
    with transaction(factory) as s:
        publish_after_commit(s, queues.PLACE_HOLD, "job_alone")
    engine.dispose()
    got = _messages(broker.url, len(ids))
    assert sorted(i for _, args in got for i in args) == sorted(ids)  # none lost, none twice, no rollback
    assert len(got) < len(ids)  # batched
    assert _messages(broker.url, 1, queue=queues.JOBS) == [(queues.PLACE_HOLD, ["job_alone"])]
