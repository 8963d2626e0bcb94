"""Streaming: live events to readers, as Server-Sent Events and over WebSocket.

Both transports are thin loops over a :class:`~patter_dash.hub.Subscription`:
read frames (waiting at most one heartbeat), write them, repeat. Resume with
``Last-Event-ID`` (or ``?last_event_id=``), filter with ``?call_id=`` and
``?types=``. A reader stuck in a socket write is cut off by the hub's reaper
(the socket is shut down under it) and can resume losslessly from the ring.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request
from simple_websocket import ConnectionClosed

from . import params
from .events import EVENT_TYPES
from .extension import current_dashboard
from .hub import OVERFLOW, RESET, SHUTDOWN, HubFull, Subscription
from .ingest import sock

bp = Blueprint("streaming", __name__)
RETRY_MS = 2000


def _subscribe() -> tuple[Subscription, bool]:
    """Parse the stream parameters and subscribe; returns (subscription, needs_reset)."""
    hub = current_dashboard().pipeline.hub
    raw_after = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    after = None
    if raw_after:
        after = params.integer({"last_event_id": raw_after.strip()}, "last_event_id", 0, 0, 2**62)
    types = None
    if request.args.get("types"):
        types = [t.strip() for t in request.args["types"].split(",") if t.strip()]
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            raise params.BadParam("types", f"unknown type(s) {', '.join(unknown)}; allowed: {', '.join(EVENT_TYPES)}")
    call_id = params.text(request.args, "call_id")
    needs_reset = after is not None and not hub.check_resume(after)
    sub = hub.subscribe(None if needs_reset else after, types, call_id, _shutdown_socket(socket.SHUT_RDWR))
    return sub, needs_reset


def _client_socket() -> Any:
    """This request's client socket, where the server exposes it (gunicorn, werkzeug)."""
    return request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")


def _shutdown_socket(how: int) -> Callable[[], None] | None:
    """A callable that shuts down this request's client socket (``how``: SHUT_RD or SHUT_RDWR).

    SHUT_RDWR breaks a write blocked on a reader that stopped reading; SHUT_RD
    after a final event makes gunicorn's keep-alive loop see EOF and close the
    connection, instead of holding the worker for the keep-alive timeout.
    """
    raw = _client_socket()
    if raw is None:
        return None

    def shutdown() -> None:
        try:
            raw.shutdown(how)
        except OSError:
            pass  # already gone

    return shutdown


def _client_gone() -> Callable[[], bool]:
    """A check whether the client closed its end, without reading or blocking.

    A write to a closed peer usually succeeds once (the kernel takes it, the
    reset comes back later), so relying on the heartbeat's write notices a
    vanished client only at the second heartbeat. An SSE client sends nothing
    after its request, so EOF on a non-blocking peek means it is gone.
    """
    raw = _client_socket()
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


def _busy(exc: HubFull) -> tuple[Response, int]:
    response = jsonify(error=f"live stream unavailable: {exc}; retry later")
    response.headers["Retry-After"] = "5"
    return response, 503


def _notice(name: str, **data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.get("/events")
def events() -> Response | tuple[Response, int]:
    try:
        sub, needs_reset = _subscribe()
    except HubFull as exc:
        return _busy(exc)
    dash = current_dashboard()
    hub, heartbeat = dash.pipeline.hub, dash.settings.HEARTBEAT
    end_keepalive = _shutdown_socket(socket.SHUT_RD)
    client_gone = _client_gone()

    def stream() -> Iterator[str | bytes]:
        try:
            yield f"retry: {RETRY_MS}\n: connected, last id {hub.head}\n\n"
            if needs_reset:
                yield _notice("reset", reason="resume point is older than the replay buffer", last_id=hub.head)
            while True:
                result = hub.read(sub, heartbeat)
                if result == SHUTDOWN:
                    yield _notice("shutdown", reason="server stopping; reconnect")
                    if end_keepalive is not None:
                        end_keepalive()
                    return
                if result == OVERFLOW:
                    yield _notice("overflow", reason="client too slow; reconnect with Last-Event-ID")
                    return
                if result == RESET:
                    yield _notice("reset", reason="fell behind the replay buffer", last_id=hub.head)
                elif result:
                    yield b"".join(frame.sse for frame in result)
                elif client_gone():
                    return
                else:
                    yield ": heartbeat\n\n"
        finally:
            hub.unsubscribe(sub)

    return Response(
        stream(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@sock.route("/ws", bp=bp)
def live_ws(ws: Any) -> None:
    try:
        sub, needs_reset = _subscribe()
    except HubFull as exc:
        ws.close(reason=1013, message=str(exc))
        return
    dash = current_dashboard()
    hub = dash.pipeline.hub
    # Wake at least once per ping interval to notice a peer the pinger closed.
    wait = min(dash.settings.HEARTBEAT, dash.settings.WS_PING_INTERVAL)
    try:
        if needs_reset:
            ws.send(json.dumps({"event": "reset", "data": {"last_id": hub.head}}))
        while ws.connected:
            result = hub.read(sub, wait)
            if result in (SHUTDOWN, OVERFLOW):
                ws.send(json.dumps({"event": result, "data": {}}))
                ws.close(reason=1001 if result == SHUTDOWN else 1013, message=str(result))
                return
            if result == RESET:
                ws.send(json.dumps({"event": "reset", "data": {"last_id": hub.head}}))
                continue
            for frame in result:
                ws.send(frame.ws)
    except ConnectionClosed:
        pass
    finally:
        hub.unsubscribe(sub)
