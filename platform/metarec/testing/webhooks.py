"""A webhook receiver on 127.0.0.1 for notification tests: records every POST, can fail."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records ``(path, headers, body)`` of each POST; answers ``statuses`` in turn, then 200."""

    def __init__(self, *, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self.statuses = list(statuses or [])
        self.delay_s = delay_s
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                if receiver.delay_s:
                    threading.Event().wait(receiver.delay_s)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append((self.path, dict(self.headers), body))
                receiver.arrived.set()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The receiver's base URL."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self, path: str) -> list[Any]:
        """The bodies POSTed to ``path`` (answered with any status)."""
        return [body for seen, _headers, body in self.received if seen == path]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
