"""Ingest: events from a runtime in another process, over HTTP and WebSocket.

* ``POST /api/v1/ingest``: one envelope ``{"type", "data", "id"}`` or
  ``{"events": [...]}``; a batch is validated whole before any of it is queued.
* ``POST /api/dashboard/ingest``: the exact body Patter 0.7.0's
  ``notify_dashboard`` sends, classified its way.
* ``/api/v1/ingest/ws``: the same envelopes as WebSocket text frames, one ack
  (or error) frame back for each, written by the one greenlet that reads.

Every refusal is a 4xx JSON ``{"error", "details"}``; nothing is queued then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from werkzeug.exceptions import (
    HTTPException,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from ..core.cooperative import Slices
from ..core.pipeline import Ack, ApplyFailed, Pipeline, QueueFull
from ..model.clean import ValidationError, parse_json
from ..model.events import events_from_body
from ..model.patter import event_from_patter_notify
from ..model import jsoncodec
from . import auth
from .context import API_PREFIX, current_dashboard
from .deadline import read_bounded

bp = Blueprint("ingest", __name__)
sock = Sock()


def _refusal(exc: HTTPException, field: str, error: str) -> HTTPException:
    exc.details = [{"field": field, "error": error}]  # type: ignore[attr-defined]  # the blueprint's JSON body
    return exc


def _read_json() -> Any:
    """The request body as strict JSON, or raise (415, 413, 408, ValidationError)."""
    if request.mimetype != "application/json":
        wrong = UnsupportedMediaType("Content-Type must be application/json")
        raise _refusal(wrong, "Content-Type", f"must be application/json, got {request.mimetype or 'none'}")
    settings = current_dashboard().settings
    limit = settings.MAX_BODY
    too_large = _refusal(
        RequestEntityTooLarge(f"body larger than PATTER_DASH_MAX_BODY ({limit} bytes)"), "body", f"must be at most {limit} bytes"
    )
    return parse_json(read_bounded(limit, settings.BODY_TIMEOUT, too_large))


def _acks_view(acks: list[Ack]) -> dict[str, Any]:
    body: dict[str, Any] = {"accepted": [{"seq": a.seq, "duplicate": a.duplicate} for a in acks]}
    if len(acks) == 1:
        body.update(seq=acks[0].seq, duplicate=acks[0].duplicate)
    return body


def _answer(acks: list[Ack], **extra: Any) -> tuple[Response, int]:
    # A replayed id changes nothing: 200, not 202.
    return jsonify(**extra, **_acks_view(acks)), 200 if all(a.duplicate for a in acks) else 202


@contextmanager
def _counting_refusals(pipeline: Pipeline) -> Iterator[None]:
    """An invalid body counts as rejected (health's events.rejected, the metrics), then is answered as usual."""
    try:
        yield
    except ValidationError:
        pipeline.note_rejected()
        raise


@bp.post(f"{API_PREFIX}/ingest")
@auth.ingest
def ingest() -> tuple[Response, int]:
    pipeline = current_dashboard().pipeline
    with _counting_refusals(pipeline):
        events = events_from_body(_read_json(), Slices().pause_if_due)
    return _answer(pipeline.submit(events))


@bp.post("/api/dashboard/ingest")
@auth.patter_ingest
def patter_ingest() -> tuple[Response, int]:
    pipeline = current_dashboard().pipeline
    with _counting_refusals(pipeline):
        event = event_from_patter_notify(_read_json())
    acks = pipeline.submit([event])
    kind = {"call_initiated": "initiated", "call_end": "ended", "call_start": "started"}[event.type]
    return _answer(acks, ok=True, call_id=event.call_id, event=kind)


@sock.route(f"{API_PREFIX}/ingest/ws", bp=bp)
@auth.ingest
def ingest_ws(ws: Any) -> None:
    pipeline = current_dashboard().pipeline
    try:
        while True:
            message = ws.receive()
            if message is None:
                return
            try:
                acks = pipeline.submit(events_from_body(parse_json(message), Slices().pause_if_due))
                reply: dict[str, Any] = {"ok": True, **_acks_view(acks)}
            except ValidationError as exc:
                pipeline.note_rejected()
                reply = {"ok": False, "error": exc.message, "details": exc.details}
            except QueueFull as exc:
                reply = {"ok": False, "error": f"{exc}; retry shortly", "retry": True}
            except ApplyFailed as exc:
                reply = {"ok": False, "error": f"internal error: {exc}"}
            ws.send(jsoncodec.dumps(reply))
    except ConnectionClosed:
        return  # the peer left, or the size limit closed the socket (1009)
