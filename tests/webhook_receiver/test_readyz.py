"""``GET /readyz`` on a receiver of the test's own (its own database and broker, served
over real HTTP): 200 only when the database answers, its schema is at the code's Alembic
head and the broker accepts a connection; 503 JSON naming what is not."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from base.settings import Settings
from gpubill.broker import EmbeddedBroker, free_port
from ledger.migrate import upgrade
from tests.conftest import BACKEND
from tests.stacks import serving, throwaway_db
from webhook_receiver import create_app
from webhook_receiver.responses import Readiness

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    b = EmbeddedBroker(tmp_path_factory.mktemp("ready-broker")).start()
    try:
        yield b.url
    finally:
        b.stop()


def _ready(database_url: str, broker_url: str, tmp_path) -> tuple[int, dict]:
    app = create_app(Settings(env="test", data_dir=tmp_path, database_url=database_url, broker_url=broker_url))
    with serving(app) as url:
        r = requests.get(f"{url}/readyz", timeout=15)
    body = r.json()
    Readiness.model_validate(body)  # the shape /openapi.json publishes
    return r.status_code, body


def test_ready_when_database_at_head_and_broker_up(broker, tmp_path) -> None:
    with throwaway_db(BACKEND, tmp_path) as url:
        upgrade(url)
        assert _ready(url, broker, tmp_path) == (200, {"status": "ok", "checks": {
            "database": "ok", "migrations": "ok", "broker": "ok"}})


def test_503_when_migrations_are_behind(broker, tmp_path) -> None:
    with throwaway_db(BACKEND, tmp_path) as url:
        upgrade(url, "0001")
        status, body = _ready(url, broker, tmp_path)
        assert status == 503 and body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
        assert body["checks"]["migrations"].startswith("not at head: database at 0001")


def test_503_when_the_database_is_unreachable(broker, tmp_path) -> None:
    url = (f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing" if BACKEND == "postgres"
           else f"sqlite:///{tmp_path / 'no-such-dir' / 'ledger.db'}")
    status, body = _ready(url, broker, tmp_path)
    assert status == 503 and body["checks"]["database"] != "ok"
    assert body["checks"]["migrations"] == "unknown" and body["checks"]["broker"] == "ok"


def test_503_when_the_broker_is_unreachable(tmp_path) -> None:
    with throwaway_db(BACKEND, tmp_path) as url:
        upgrade(url)
        status, body = _ready(url, f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    assert status == 503
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"
