"""Bodies: streamed response bodies, and the client connection under them.

A streamed body (SSE, export) holds its resources (a hub subscription, an
export snapshot) only while it is being sent: it takes them on its first
iteration, inside a generator whose ``finally`` gives them back, so a
response that is built but never iterated (``HEAD``, a client gone before
the first byte, an error after the view) holds nothing. :func:`guarded` makes
sure a body never raises into the server: gunicorn would log the request as
``GET None`` and could write a 500 after a 200; instead the failure is logged
with method and path and the connection is cut, so the client sees an
incomplete body rather than a silently short one.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from flask import request

log = logging.getLogger("patter_dash")


class StreamStats:
    """Counters for streamed exports, shown in ``/api/v1/health`` under ``export``."""

    def __init__(self) -> None:
        # Bodies run in greenlets or in threads (a threaded host): += is not atomic there.
        self._lock = threading.Lock()
        self.open = 0  # exports holding a snapshot right now
        self.row_errors = 0  # rows skipped because they could not be encoded
        self.failed = 0  # exports cut short by an unexpected error

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def view(self) -> dict[str, int]:
        return {"open": self.open, "row_errors": self.row_errors, "failed": self.failed}


def guarded(
    body: Iterator[str | bytes],
    what: str,
    abort: Callable[[], None] | None,
    on_fail: Callable[[], None] | None = None,
) -> Iterator[bytes]:
    """``body`` as bytes; an error in it is logged and cuts the connection instead of raising.

    ``what`` names the request ("GET /api/v1/export/csv") for the log. Closing
    this generator closes ``body``, so the body's ``finally`` runs whether the
    client read it all, left mid-way or the server dropped it unread.
    """
    try:
        for chunk in body:
            # Encoded here, not by Werkzeug, so an encoding error is caught too.
            yield chunk if isinstance(chunk, bytes) else chunk.encode("utf-8")
    except Exception:
        log.exception("patter-dash: %s failed while streaming; connection cut", what)
        if on_fail is not None:
            on_fail()
        if abort is not None:
            # Without this the body would end as if complete (a short CSV that looks whole).
            abort()
    finally:
        body.close()


def describe() -> str:
    """This request as the log should name it: method and path (never the query, which may hold a token)."""
    return f"{request.method} {request.path}"


def client_socket() -> Any:
    """This request's client socket, where the server exposes it (gunicorn, werkzeug)."""
    return request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")


def shutdown_socket(how: int) -> Callable[[], None] | None:
    """A callable that shuts down this request's client socket (``how``: SHUT_RD or SHUT_RDWR).

    SHUT_RDWR breaks a write blocked on a reader that stopped reading, and
    cuts a body that failed; SHUT_RD after a final event makes gunicorn's
    keep-alive loop see EOF and close the connection, instead of holding the
    worker for the keep-alive timeout.
    """
    raw = client_socket()
    if raw is None:
        return None

    def shutdown() -> None:
        try:
            raw.shutdown(how)
        except OSError:
            pass  # already gone

    return shutdown


def client_gone() -> Callable[[], bool]:
    """A check whether the client closed its end, without reading or blocking.

    A write to a closed peer usually succeeds once (the kernel takes it, the
    reset comes back later), so relying on writes notices a vanished client
    late. A streaming client sends nothing after its request, so EOF on a
    non-blocking peek means it is gone.
    """
    raw = client_socket()
    sock = getattr(raw, "_sock", raw)  # under gevent: the OS socket beneath, which never waits

    def gone() -> bool:
        if sock is None:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    return gone
