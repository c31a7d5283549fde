"""Outbound job webhooks reuse this process's keep-alive connection to the app
(``services.notifications.post``, docs/performance.md) instead of a new connection and
``requests.Session`` per POST, and stay signed on every POST."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services import notifications

seen: list[tuple[int, str]] = []  # (client port, signature header) per POST


class KeepAliveApp(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open, as a production app server does

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        seen.append((self.client_address[1], self.headers.get(notifications.SIGNATURE_HEADER, "")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


def test_posts_reuse_one_connection_and_are_signed() -> None:
    seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveApp)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks"
        for n in range(3):
            notifications.post(url, "whsec_test", f'{{"id": "evt_{n}"}}', timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == 3
    assert len({port for port, _ in seen}) == 1, seen  # one TCP connection for all three
    assert all(sig.startswith("t=") and ",v1=" in sig for _, sig in seen)
