"""A stand-in for the app's webhook endpoint: records every notification gpubill POSTs
and answers 500 to the first N deliveries of a job when told to (retry tests)."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Delivery:
    status: int  # what the sink answered
    signature: str
    raw: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.raw)


@dataclass
class NotifySink:
    deliveries: list[Delivery] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)  # job id -> 500s to answer
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: BaseWSGIServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/hooks/gpubill"

    def for_job(self, job_id: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.event["data"]["object"]["job_id"] == job_id]

    def __call__(self, environ: Any, start_response: Any) -> Any:
        req = Request(environ)
        raw = req.get_data()
        try:
            job_id = json.loads(raw)["data"]["object"]["job_id"]
        except (ValueError, KeyError, TypeError):
            return Response("bad body", 400)(environ, start_response)
        with self._lock:
            left = self.fail_first.get(job_id, 0)
            self.fail_first[job_id] = max(0, left - 1)
            status = 500 if left else 200
            self.deliveries.append(Delivery(status, req.headers.get("Gpubill-Signature", ""), raw))
        return Response("{}", status, content_type="application/json")(environ, start_response)

    def start(self) -> NotifySink:
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True, name="notify-sink").start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
