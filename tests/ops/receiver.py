"""A real local webhook receiver (http.server in a thread) that checks patter-dash's signature.

``mode`` decides the answer: ``ok`` (204), ``fail`` (500), ``hang`` (never
answers within the sender's timeout), ``drip`` (a 200 whose headers come a
byte every 0.3 s: each read is quick, the answer never complete). Every request is recorded; only
correctly signed ones whose timestamp is fresh count as ``accepted``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, secret: str | None = None, mode: str = "ok", hang: float = 30.0) -> None:
        self.secret = secret
        self.mode = mode
        self.hang = hang
        self.requests: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._record(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        mode = self.mode
        entry = {"headers": dict(handler.headers), "body": body, "mode": mode, "at": time.time()}
        with self.lock:
            self.requests.append(entry)
        if mode == "hang":
            time.sleep(self.hang)
            return
        if mode == "drip":
            deadline = time.monotonic() + self.hang
            try:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
                while time.monotonic() < deadline:
                    handler.wfile.write(b"X")
                    handler.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass  # the sender gave up
            return
        if mode == "fail":
            handler.send_response(500)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        ok = True
        if self.secret is not None:
            stamp = handler.headers.get("X-Patter-Dash-Timestamp", "")
            given = handler.headers.get("X-Patter-Dash-Signature", "")
            mac = hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(given, "sha256=" + mac) and stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        if not ok:
            with self.lock:
                self.bad_signatures += 1
            handler.send_response(401)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        with self.lock:
            self.accepted.append(json.loads(body))
        handler.send_response(204)
        handler.end_headers()

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [n for n in self.accepted if predicate(n)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no matching notification within {timeout} s; got {self.accepted!r}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
