"""A loopback HTTP proxy in front of a Flower SuperLink's Fleet API that can answer HTTP 500 to the
next PushMessages, as Flower's SQLite state does when its database is locked."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class FaultyProxy:
    """Forwards every request to ``upstream`` (host:port) except, once armed by ``fail_next_push``,
    the next PushMessages, which gets a 500. Counts the pushes it saw and the ones it failed."""

    def __init__(self, upstream: str) -> None:
        self.pushes, self.failed, self._armed = 0, 0, 0
        self._lock = threading.Lock()
        client = httpx.Client(base_url=f"http://{upstream}", timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/push-messages") and proxy._take_push():
                    self._answer(500, b"database is locked", "text/plain")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                reply = client.post(self.path, content=body, headers=headers)
                self._answer(reply.status_code, reply.content, reply.headers.get("content-type", ""))

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def fail_next_push(self) -> None:
        with self._lock:
            self._armed += 1

    def _take_push(self) -> bool:
        """Counts a push; whether it is to fail."""
        with self._lock:
            self.pushes += 1
            if self._armed:
                self._armed -= 1
                self.failed += 1
                return True
            return False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
