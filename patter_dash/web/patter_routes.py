"""Patter routes: Patter 0.7.0's own ``/api/dashboard`` routes, as a compatibility surface.

Patter's dashboard page and the scripts written against it read these
(``getpatter/dashboard/routes.py``); ``/api/v1`` is the primary API. They are
thin adapters over what every other route uses: the store, the pipeline's one
writer for deletions, the hub (Patter's event names and ``data`` are a
rendering of its frames, on :func:`~.streaming.sse_response`'s subscription
lifecycle), the export machinery (snapshots, pacing, formula-safe cells, the
health counters) and the blueprint's auth. Shapes and status codes are
Patter's, leniency included: a bad ``limit``, ``offset``, ``from``, ``to`` or
``format`` falls back to its default as in Patter, never a 400. Where Patter
has no bound (every live call with every turn) the bounds of ``/api/v1`` apply.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import math
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..core.cooperative import offload
from ..core.hub import Frame
from ..core.pipeline import paced
from ..core.store import CallFilter, CallStore
from ..model import jsoncodec, records
from ..model.clean import ValidationError, clean_text, parse_json
from ..model.records import Call
from ..model.views import ACTIVE_PAGE_TEXT, ACTIVE_PAGE_TURNS, ACTIVE_TURNS
from . import api, auth, export, params
from .bodies import describe, guarded, shutdown_socket
from .context import current_dashboard
from .deadline import read_bounded
from .streaming import StreamRequest, sse_response

if TYPE_CHECKING:
    from .extension import PatterDashboard

bp = Blueprint("patter_routes", __name__)
F = TypeVar("F", bound=Callable[..., Any])

#: The hub's frame types and the name Patter's store publishes each under (``MetricsStore._publish``).
EVENT_NAMES = {
    "call_initiated": "call_initiated",
    "call_start": "call_start",
    "call_status": "call_status",
    "transcript": "transcript_line",
    "turn": "turn_complete",
    "call_end": "call_end",
    "call_deleted": "calls_deleted",
}
#: Patter's export columns (``getpatter.dashboard.export.calls_to_csv``), in its order.
CSV_COLUMNS = (
    "call_id", "caller", "callee", "direction", "started_at", "ended_at", "duration_s",
    "cost_total", "cost_stt", "cost_tts", "cost_llm", "cost_telephony", "avg_latency_ms", "turns_count", "provider_mode",
)
#: What Patter's dashboard answers for a call it does not hold.
NOT_FOUND = "Not found"
BAD_DELETE = "Expected JSON body {'call_ids': [...]}"
#: Patter's roles for a live line (``record_transcript_line`` publishes no other).
_SPOKEN = ("user", "assistant")


# ------------------------------------------------------------------ shapes


#: One source for the shape: the detail of ``/api/v1`` and its JSON export give the same ``metrics``.
patter_metrics = records.patter_metrics


def patter_record(call: Call) -> dict[str, Any]:
    """A finished call as Patter's ``get_calls`` / ``get_call`` give it."""
    turns = [records.turn_view(t) for t in call.turns]
    return {
        "call_id": call.call_id,
        "caller": call.caller,
        "callee": call.callee,
        "direction": call.direction or "inbound",
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "status": call.status,
        "metrics": patter_metrics(call, turns),
        "transcript": records.transcript_view(call),
        "turns": turns,
    }


def patter_live(call: Call, transcript: list[dict[str, Any]], turns: list[dict[str, Any]]) -> dict[str, Any]:
    """A live call as Patter's ``get_active_calls`` gives it (no ``ended_at``, no ``metrics``)."""
    return {
        "call_id": call.call_id,
        "caller": call.caller,
        "callee": call.callee,
        "direction": call.direction or "inbound",
        "started_at": call.started_at,
        "status": call.status,
        "turns": turns,
        "transcript": transcript,
    }


def _json(body: Any, status: int = 200) -> Response:
    return Response(jsoncodec.dumpb(body), status=status, mimetype="application/json")


def _lenient_int(name: str, default: int) -> int:
    """Patter's parse: ``int()`` of the value, the default when that fails."""
    try:
        return int(request.args.get(name, str(default)))
    except (ValueError, TypeError):
        return default


# ------------------------------------------------------------------- reads


@bp.get("/api/dashboard/calls")
def list_calls() -> Response:
    limit = max(0, min(_lenient_int("limit", 50), 1000))
    offset = min(max(_lenient_int("offset", 0), 0), 10**9)  # past every call anyway; islice wants a machine int
    calls, _ = current_dashboard().store.page(CallFilter(), limit, offset)
    rows = [jsoncodec.dumps(patter_record(c)) for c in api._yielding(calls)]
    return Response(f"[{','.join(rows)}]", mimetype="application/json")


@bp.get("/api/dashboard/calls/<anypath:call_id>")
def call_detail(call_id: str) -> Response:
    # Patter falls back to the live record, so a live transcript can be polled here.
    call = current_dashboard().store.get(call_id)
    if call is None:
        return _json({"error": NOT_FOUND}, 404)
    if call.active:
        return _json(patter_live(call, records.transcript_view(call), [records.turn_view(t) for t in call.turns]))
    return _json(patter_record(call))


@bp.get("/api/dashboard/active")
def active_calls() -> Response:
    """Every live call, in the order first seen (Patter's dict order), within /api/v1's page budgets.

    Patter has no page here, so the budgets are shared by the calls there are:
    one live call gets the newest 100 turns and 1,000,000 characters of lines.
    """
    calls = current_dashboard().store.active_calls()
    calls.reverse()
    n = max(1, len(calls))
    most_turns, share = min(ACTIVE_TURNS, ACTIVE_PAGE_TURNS // n), ACTIVE_PAGE_TEXT // n
    rows = []
    for call in api._yielding(calls):
        lines, _ = api._tail(call.transcript, share)  # replaced whole, never shrunk in place: safe unlocked
        turns, _ = api._newest_turns(call.turns, most_turns, share)
        rows.append(jsoncodec.dumps(patter_live(call, lines, turns)))
    return Response(f"[{','.join(rows)}]", mimetype="application/json")


@bp.get("/api/dashboard/aggregates")
def aggregates() -> Response:
    totals = current_dashboard().store.overview(None, None)
    return _json({
        "total_calls": totals["total_calls"],
        "total_cost": totals["total_cost"],
        "avg_duration": totals["avg_duration"],
        "avg_latency_ms": totals["avg_latency_ms"],
        "cost_breakdown": totals["cost_breakdown"],
        "active_calls": totals["active_calls"],
        "sdk_version": _sdk_version(),
    })


def _installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


@lru_cache(maxsize=1)
def _sdk_version() -> str:
    """getpatter's version where it is installed beside the dashboard, as Patter reports its own; else ""."""
    return offload(_installed, "getpatter")  # reads package metadata files: once, off the event loop


# ---------------------------------------------------------------- deleting


def _write(view: F) -> F:
    """A deletion: auth's ``write`` kind, and a browser's Origin must be this server or a CORS origin.

    Checked here as well, so no other site can make a signed-in (or a local,
    tokenless) browser delete, whatever the auth module of the day enforces.
    """

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if not auth.origin_allowed(current_dashboard().settings):
            message = "cross-origin request refused: Origin is neither this server nor in PATTER_DASH_CORS_ORIGINS"
            return _json({"error": message}, 403)
        return view(*args, **kwargs)

    return auth.kind("write")(checked)  # type: ignore[return-value]


def _delete(call_ids: Iterable[str]) -> Response:
    """Delete finished calls through the pipeline's one writer; Patter's answer.

    Live calls are skipped, as Patter skips them (a mid-call delete must not
    orphan its live pane); blank and unknown ids are left out of the answer.
    A journal that cannot be written raises JournalDown: the blueprint's 503.
    """
    dash = current_dashboard()
    active = dash.store.active
    wanted = sorted({i for i in call_ids if i and i not in active})  # sorted: the call_deleted frame lists them so too
    deleted = sorted(dash.pipeline.delete(wanted)) if wanted else []
    return _json({"deleted": deleted, "count": len(deleted)})


@bp.delete("/api/dashboard/calls/<anypath:call_id>")
@_write
def delete_call(call_id: str) -> Response:
    return _delete([call_id])


@bp.post("/api/dashboard/calls/delete")
@_write
def delete_calls() -> Response:
    body = _read_body()
    raw = body.get("call_ids") if isinstance(body, Mapping) else None
    if not isinstance(raw, list):
        return _json({"error": BAD_DELETE}, 400)
    return _delete(clean_text(c) for c in raw if isinstance(c, str))


def _read_body() -> Any:
    """The body as JSON whatever its Content-Type (Patter reads it so), or None; within the ingest limits."""
    settings = current_dashboard().settings
    limit = settings.MAX_BODY
    too_large = RequestEntityTooLarge(f"body larger than PATTER_DASH_MAX_BODY ({limit} bytes)")
    raw = read_bounded(limit, settings.BODY_TIMEOUT, too_large)
    try:
        return parse_json(raw)
    except ValidationError:
        return None


# ------------------------------------------------------------------- live


@bp.get("/api/dashboard/events")
def events() -> Response | tuple[Response, int]:
    """Patter's event stream: its names and ``data``, with ``id:`` lines so EventSource resumes losslessly."""
    wanted = StreamRequest(_resume_point(), list(EVENT_NAMES), request.args.get("call_id") or None)
    store = current_dashboard().store
    return sse_response(wanted, lambda frames: b"".join(patter_frame(f, store) for f in frames))


def _resume_point() -> int | None:
    """Last-Event-ID (or ``?last_event_id=``); Patter reads neither, so a bad one means "live only", not a 400."""
    raw = (request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "").strip()
    if not raw:
        return None
    try:
        return params.integer({"id": raw}, "id", 0, 0, 2**62)
    except params.BadParam:
        return None


@lru_cache(maxsize=256)
def patter_frame(frame: Frame, store: CallStore) -> bytes:
    """One hub frame as Patter's SSE event (``MetricsStore._publish``), or b"" where Patter sends none.

    Cached: every Patter reader gets the same bytes for a frame, encoded once.
    """
    data = _event_data(frame, jsoncodec.loads(frame.sse[frame.sse.index(b"\ndata: ") + 7 : -2]), store)
    if data is None:
        return b""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (frame.seq, EVENT_NAMES[frame.type].encode(), jsoncodec.dumpb(data))


def _event_data(frame: Frame, payload: dict[str, Any], store: CallStore) -> dict[str, Any] | None:
    kind, call_id = frame.type, frame.call_id
    call = payload.get("call") or {}
    if kind == "call_initiated":
        return {"call_id": call_id, "caller": call.get("caller", ""), "callee": call.get("callee", ""),
                "direction": call.get("direction") or "outbound", "status": call.get("status", "initiated")}
    if kind == "call_start":
        return {"call_id": call_id, "caller": call.get("caller", ""), "callee": call.get("callee", ""),
                "direction": call.get("direction") or "inbound"}
    if kind == "call_status":
        return {"call_id": call_id, "status": call.get("status", "")}
    if kind == "transcript":
        line = payload.get("line")
        if not line or line.get("role") not in _SPOKEN:
            return None  # over the call's budget (not stored), or a tool line: Patter publishes neither
        return {"call_id": call_id, "turnIndex": line.get("turnIndex"), "role": line["role"], "text": line["text"]}
    if kind == "turn":
        turn = payload.get("turn")
        return None if turn is None else {"call_id": call_id, "turn": turn}
    if kind == "call_end":
        held = store.get(call_id)
        metrics = None
        if held is not None and not held.active:
            metrics = patter_metrics(held, [records.turn_view(t) for t in held.turns])
        return {"call_id": call_id, "metrics": metrics}
    if kind == "call_deleted":
        return {"call_ids": payload.get("call_ids") or []}
    return None


# ------------------------------------------------------------------ export


@bp.get("/api/dashboard/export/calls")
def export_calls() -> Response:
    """Patter's export: ``format=csv`` (else JSON), ``from``/``to`` inclusive (ISO 8601; no zone = UTC).

    Without a range, every finished call newest first; with one, those that
    started in it in the order they finished (Patter's ``get_calls_in_range``).
    """
    fmt = "csv" if request.args.get("format") == "csv" else "json"
    start, end = _lenient_time("from"), _lenient_time("to")
    ranged = bool(start or end)  # Patter: a zero (1970-01-01) bound counts as none
    flt = CallFilter(start=start or None, end=math.nextafter(end, math.inf) if end else None)
    dash = current_dashboard()
    if request.method == "HEAD":
        body: Iterable[bytes] = iter(())  # headers only: no snapshot
    else:
        abort = shutdown_socket(socket.SHUT_RDWR)
        body = guarded(_export_body(dash, flt, ranged, fmt), describe(), abort, lambda: dash.streams.add("failed"))
    response = Response(body, mimetype="text/csv" if fmt == "csv" else "application/json")
    response.headers["Content-Disposition"] = f"attachment; filename=patter_calls.{fmt}"
    return response


def _lenient_time(name: str) -> float:
    try:
        return params.timestamp(request.args, name) or 0.0
    except params.BadParam:
        return 0.0  # Patter ignores a value it cannot parse


def _export_body(dash: PatterDashboard, flt: CallFilter, ranged: bool, fmt: str) -> Iterator[bytes]:
    """The export, snapshot included, counted with /api/v1's exports (health: export.*)."""
    stats = dash.streams
    stats.add("open")
    rows = export._RowGuard(stats, f"patter {fmt}")
    try:
        calls = dash.store.snapshot(flt)
        if ranged:
            calls.reverse()
        if fmt == "csv":
            yield ",".join(CSV_COLUMNS).encode() + b"\r\n"
            for batch in paced(calls):
                yield b"".join(rows.encode(batch, _csv_rows))
        else:
            first = True
            yield b"["
            for batch in paced(calls):
                encoded = rows.encode(batch, lambda b: [jsoncodec.dumps(patter_record(c)) for c in b])
                if encoded:
                    yield (b"" if first else b",") + b",".join(encoded)
                    first = False
            yield b"]"
        rows.report()
    finally:
        stats.add("open", -1)


def _csv_rows(batch: list[Call]) -> list[str]:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(csv_row(c) for c in batch)
    return [buffer.getvalue()]


def csv_row(call: Call) -> list[Any]:
    """Patter's ``calls_to_csv`` row for the call; its text cells made formula-safe as in /api/v1's export.

    Numbers are written as Patter writes them (Python's ``str``); a missing one is an empty cell.
    """
    metrics = patter_metrics(call, []) or {}
    cost = metrics.get("cost") or {}
    latency = metrics.get("latency_avg") or {}
    safe = export.safe_cell
    return [
        safe(call.call_id), safe(call.caller), safe(call.callee), safe(call.direction or "inbound"),
        call.started_at, call.ended_at, metrics.get("duration_seconds"),
        cost.get("total"), cost.get("stt"), cost.get("tts"), cost.get("llm"), cost.get("telephony"),
        latency.get("total_ms"), len(call.turns) if metrics else 0, safe(metrics.get("provider_mode") or ""),
    ]
