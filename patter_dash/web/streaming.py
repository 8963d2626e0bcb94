"""Streaming: live events to readers, as Server-Sent Events and over WebSocket.

Both transports are thin loops over a :class:`~patter_dash.core.hub.Subscription`:
read frames (waiting at most a second, to notice a client that left), write
them, repeat. Resume with ``Last-Event-ID`` (or ``?last_event_id=``), filter
with ``?call_id=`` and ``?types=``. A reader stuck in a socket write is cut off
by the hub's reaper (the socket is shut down under it) and can resume
losslessly from the ring. A subscription exists only while a body is being
sent to a connected client: SSE subscribes on the body's first iteration
(``HEAD`` never does), WebSocket after the handshake.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request
from simple_websocket import ConnectionClosed

from ..core.hub import OVERFLOW, RESET, SHUTDOWN, Frame, Hub, HubFull, Subscription
from ..model.views import STREAM_TYPES
from ..model import jsoncodec
from . import params
from .bodies import client_gone, describe, guarded, shutdown_socket
from .context import current_dashboard
from .ingest import sock

bp = Blueprint("streaming", __name__)
RETRY_MS = 2000
#: How often an idle stream checks that its client is still there (seconds):
#: a client that left frees its subscription within this, whatever the heartbeat.
CLIENT_CHECK = 1.0


@dataclass(frozen=True)
class StreamRequest:
    """What a reader asked for, parsed in the view (so bad input is a 400, not a broken stream)."""

    after: int | None
    types: list[str] | None
    call_id: str | None

    def subscribe(self, hub: Hub, on_overflow: Callable[[], None] | None) -> tuple[Subscription, bool]:
        """Subscribe now; returns (subscription, needs_reset). Raises HubFull."""
        needs_reset = self.after is not None and not hub.check_resume(self.after)
        sub = hub.subscribe(None if needs_reset else self.after, self.types, self.call_id, on_overflow)
        return sub, needs_reset


def _stream_request() -> StreamRequest:
    raw_after = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    after = None
    if raw_after:
        after = params.integer({"last_event_id": raw_after.strip()}, "last_event_id", 0, 0, 2**62)
    types = None
    if request.args.get("types"):
        types = [t.strip() for t in request.args["types"].split(",") if t.strip()]
        unknown = [t for t in types if t not in STREAM_TYPES]
        if unknown:
            raise params.BadParam("types", f"unknown type(s) {', '.join(unknown)}; allowed: {', '.join(STREAM_TYPES)}")
    return StreamRequest(after, types, params.text(request.args, "call_id"))


def _busy(reason: str) -> tuple[Response, int]:
    response = jsonify(error=f"live stream unavailable: {reason}; retry later")
    response.headers["Retry-After"] = "5"
    return response, 503


def _notice(name: str, **data: Any) -> str:
    return f"event: {name}\ndata: {jsoncodec.dumps(data)}\n\n"


@bp.get("/events")
def events() -> Response | tuple[Response, int]:
    return sse_response(_stream_request())


def _as_is(frames: list[Frame]) -> bytes:
    return b"".join(frame.sse for frame in frames)


def sse_response(wanted: StreamRequest, render: Callable[[list[Frame]], bytes] = _as_is) -> Response | tuple[Response, int]:
    """An SSE response over the hub for ``wanted``; ``render`` writes each batch of frames read.

    ``render`` may leave frames out (b"" for a batch with nothing to send):
    Patter's own event stream (:mod:`.patter_routes`) renames and reshapes
    frames this way, with this subscription lifecycle.
    """
    dash = current_dashboard()
    hub, heartbeat = dash.pipeline.hub, dash.settings.HEARTBEAT
    refused = hub.refusal()
    if refused:
        return _busy(refused)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":
        # Headers only: a HEAD (a cross-origin page can send one) never subscribes.
        return Response(iter(()), mimetype="text/event-stream", headers=headers)
    cut_off = shutdown_socket(socket.SHUT_RDWR)
    end_keepalive = shutdown_socket(socket.SHUT_RD)
    client_gone_check = client_gone()

    def stream() -> Iterator[str | bytes]:
        # The subscription is taken here, on the first iteration, not in the view:
        # a response that is never sent (HEAD, a client gone before the first
        # byte) then never holds one, and this generator's finally frees it.
        if client_gone_check():
            return
        try:
            sub, needs_reset = wanted.subscribe(hub, cut_off)
        except HubFull as exc:  # filled up since the view looked
            yield f"retry: {RETRY_MS}\n\n" + _notice("busy", reason=f"live stream unavailable: {exc}; retry later")
            return
        try:
            yield f"retry: {RETRY_MS}\n: connected, last id {hub.head}\n\n"
            if needs_reset:
                yield _notice("reset", reason="resume point is older than the replay buffer", last_id=hub.head)
            next_beat = time.monotonic() + heartbeat
            while True:
                result = hub.read(sub, max(0.0, min(CLIENT_CHECK, next_beat - time.monotonic())))
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
                elif result and (chunk := render(result)):  # type: ignore[arg-type]
                    yield chunk
                    next_beat = time.monotonic() + heartbeat
                elif client_gone_check():
                    return
                elif time.monotonic() >= next_beat - 0.005:  # Event.wait may wake a hair early
                    yield ": heartbeat\n\n"
                    next_beat = time.monotonic() + heartbeat
        finally:
            hub.unsubscribe(sub)

    return Response(guarded(stream(), describe(), cut_off), mimetype="text/event-stream", headers=headers)


@bp.before_request
def _live_ws_parameters() -> None:
    """The live WebSocket's parameters are checked before the upgrade: a 400 after it would be written
    as HTTP onto the upgraded socket, which the peer reads as a broken frame."""
    if request.url_rule is not None and request.url_rule.websocket and request.url_rule.endpoint.endswith(".live_ws"):
        _stream_request()


@sock.route("/ws", bp=bp)
def live_ws(ws: Any) -> None:
    # Subscribed after the handshake (flask-sock completes it before calling
    # us), so only a connected peer ever holds a subscription.
    wanted = _stream_request()
    dash = current_dashboard()
    hub = dash.pipeline.hub
    try:
        sub, needs_reset = wanted.subscribe(hub, shutdown_socket(socket.SHUT_RDWR))
    except HubFull as exc:
        ws.close(reason=1013, message=str(exc))
        return
    # Wake at least once a second (and once per ping interval) to notice a peer
    # that left or that the pinger closed, whatever the event rate.
    wait = min(CLIENT_CHECK, dash.settings.WS_PING_INTERVAL)
    try:
        if needs_reset:
            ws.send(jsoncodec.dumps({"event": "reset", "data": {"last_id": hub.head}}))
        while ws.connected:
            result = hub.read(sub, wait)
            if result in (SHUTDOWN, OVERFLOW):
                ws.send(jsoncodec.dumps({"event": result, "data": {}}))
                ws.close(reason=1001 if result == SHUTDOWN else 1013, message=str(result))
                return
            if result == RESET:
                ws.send(jsoncodec.dumps({"event": "reset", "data": {"last_id": hub.head}}))
                continue
            for frame in result:
                ws.send(frame.ws)
    except ConnectionClosed:
        pass
    finally:
        hub.unsubscribe(sub)
