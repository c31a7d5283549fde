"""``gpubill up`` refuses a busy port in one line (issue 16), but a port whose last
connections linger in TIME_WAIT is not busy: the servers bind with SO_REUSEADDR, and
``up`` started again within a minute of a stop was refused for the broker's port."""
from __future__ import annotations

import socket

import pytest

from gpubill.broker import free_port
from gpubill.supervision import StackError, check_ports_free


def _listener(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_a_listened_port_is_refused_naming_the_service() -> None:
    port = free_port()
    with _listener(port):
        with pytest.raises(StackError, match=f"port {port} \\(broker\\) is already in use"):
            check_ports_free({"broker": port})


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free() -> None:
    port = free_port()
    server = _listener(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side (local port `port`) enters TIME_WAIT
    server.close()
    client.close()
    check_ports_free({"broker": port})  # no StackError
