"""Container healthchecks (docker compose): ``python -m gpubill.healthcheck KIND [ARG]``.

- ``http URL``: the URL answers 2xx (receiver ``/readyz``, Flower ``/healthcheck``).
- ``worker [NAME]``: the Celery worker ``NAME`` answers a ping; without NAME, a worker
  on this host (``*@hostname``, one container per worker in compose).
- ``beat``: some beat holds the RedBeat lock (it is extended every tick, and expires
  ``redbeat_lock_timeout`` s after a beat dies).

Exit 0 healthy, 1 not (the reason on stderr). Uses the stdlib, redis and Celery only,
so it runs in the slim image without curl.
"""
from __future__ import annotations

import socket
import sys
import urllib.request
from collections.abc import Callable
from typing import cast

from base.settings import get_settings


def http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # raises on 4xx/5xx
        return f"{url} {resp.status}"


def worker(name: str = "") -> str:
    from base import queues

    app = queues.producer(get_settings().broker_url)
    try:
        replies = app.control.ping(destination=[name] if name else None, timeout=3) or []
    finally:
        app.close()
    names = [n for reply in replies for n in reply]
    mine = [n for n in names if n == name or (not name and n.endswith("@" + socket.gethostname()))]
    if not mine:
        raise RuntimeError(f"no answer from {name or '*@' + socket.gethostname()}")
    return f"{', '.join(mine)} ok"


def beat() -> str:
    import redis

    from worker.app import redbeat_config

    cfg = redbeat_config(get_settings().broker_url)
    key = f"{cfg['redbeat_key_prefix']}:lock"  # RedBeat: key_prefix + ":lock"
    # The sync client answers an int; redis-py types both clients' answers as one union.
    ttl = cast(int | None, redis.Redis.from_url(str(cfg["redbeat_redis_url"]), socket_timeout=3).pttl(key))
    if ttl is None or ttl < 0:
        raise RuntimeError(f"no beat holds {key}")
    return f"{key} held, {ttl} ms left"


def main(argv: list[str]) -> int:
    checks: dict[str, Callable[..., str]] = {"http": http, "worker": worker, "beat": beat}
    if not argv or argv[0] not in checks:
        print(f"usage: python -m gpubill.healthcheck {{{'|'.join(checks)}}} [ARG]", file=sys.stderr)
        return 2
    try:
        print(checks[argv[0]](*argv[1:]))
        return 0
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", with its reason
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
