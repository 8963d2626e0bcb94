"""Deadline: a request body must arrive within ``PATTER_DASH_BODY_TIMEOUT`` seconds.

A client that sends its body a byte at a time would otherwise hold a
connection (one of gunicorn's ``worker_connections``) for ever; enough of them
and nothing else is served. :func:`read_body` reads the whole body under one
deadline, counted from the first read; past it the client gets 408 and, once
the answer is written, its connection is shut (the rest of its body is never
read, so the connection cannot serve another request).

Under gevent the deadline is a ``gevent.Timeout`` (exact, nothing blocks).
Under threads (Werkzeug's dev server, gunicorn's sync/gthread workers) a
timer shuts the socket's read side at the deadline, which ends the read.
A server that exposes no socket gets no deadline.

Request line and headers are not read here: gunicorn's gevent worker reads
them under its ``keepalive`` timeout (see the README's Deployment section).
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from flask import Response, after_this_request, request
from werkzeug.exceptions import BadRequest, ClientDisconnected, RequestEntityTooLarge, RequestTimeout

from ..core.cooperative import gevent_active
from .bodies import shutdown_socket

T = TypeVar("T")


class _Expired(Exception):
    """Raised inside the read by the gevent timeout; never escapes this module."""


def read_body(timeout: float) -> bytes:
    """``request.get_data()``, or raise 408 if it has not all arrived within ``timeout`` seconds.

    Other errors of the read (413 from ``max_content_length``) pass through.
    """
    return read_within(timeout, lambda: request.get_data(cache=False))


def read_within(timeout: float, read: Callable[[], T]) -> T:
    """``read()`` (which reads the request body its own way), or 408 past ``timeout`` seconds.

    A body the server cannot frame (gunicorn: a bad chunk size, a chunk
    without its CRLF, a truncated chunked body) is a 400, and the connection
    is closed after it: the rest of the stream cannot be trusted.
    """
    try:
        return _read_within(timeout, read)
    except _framing_errors() as exc:
        _close_after_answer()
        raise BadRequest(f"malformed request body ({type(exc).__name__})") from None


@functools.cache
def _framing_errors() -> tuple[type[BaseException], ...]:
    """The server's own errors for a body it cannot frame (gunicorn's); none under another server."""
    try:
        from gunicorn.http.errors import NoMoreData, ParseException
    except ImportError:
        return ()
    return (ParseException, NoMoreData)


def _read_within(timeout: float, read: Callable[[], T]) -> T:
    expired = False
    if gevent_active():
        import gevent

        try:
            with gevent.Timeout(timeout, _Expired):
                return read()
        except _Expired:
            expired = True
    elif (stop_reading := shutdown_socket(socket.SHUT_RD)) is not None:
        fired = threading.Event()

        def expire() -> None:
            # Marked before the socket is cut: the reader sees the cut as soon as it
            # happens, possibly while this timer thread is still alive.
            fired.set()
            stop_reading()

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            data = read()
        except ClientDisconnected:
            if not fired.is_set():
                raise  # the client really left
            expired = True
        finally:
            watchdog.cancel()
        if not expired:
            return data
    else:
        return read()
    _close_after_answer()
    raise RequestTimeout(f"the request body did not arrive within PATTER_DASH_BODY_TIMEOUT ({timeout:g} s)")


def read_bounded(limit: int, timeout: float, too_large: Exception) -> bytes:
    """The body, at most ``limit`` bytes (else ``too_large`` is raised), within ``timeout`` (else 408)."""
    if (request.content_length or 0) > limit:
        raise too_large
    # Werkzeug cuts a chunked body (no Content-Length) at max_content_length rather than
    # refusing it, so read one byte more than allowed: getting it means the body is too large.
    request.max_content_length = limit + 1
    try:
        raw = read_body(timeout)
    except RequestEntityTooLarge:
        raise too_large from None
    if len(raw) > limit:
        raise too_large
    return raw


def _close_after_answer() -> None:
    """Close this connection once the 408 is written: the rest of the body is still on the wire."""
    close = shutdown_socket(socket.SHUT_RDWR)

    @after_this_request
    def _close(response: Response) -> Response:
        response.headers["Connection"] = "close"  # honoured by Werkzeug's server; gunicorn decides itself
        if close is not None:
            response.call_on_close(close)
        return response
