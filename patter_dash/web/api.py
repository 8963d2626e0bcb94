"""API: the read routes under ``/api/v1`` (history, live calls, detail, analytics, health).

Response shapes follow Patter 0.7.0's own ``/api/v1`` routes (``{"data": ...}``)
so clients written for Patter work unchanged. Every read is served from the
store's indexes and running aggregates, and history older than memory from
the journal (:mod:`patter_dash.core.history`, off the gevent loop): no route
scans all calls unless a filter asks it to.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import lru_cache

from flask import Blueprint, Response, jsonify, request

from ..core.pipeline import paced
from ..model import jsoncodec, records
from ..model.records import Call
from ..model.views import (
    ACTIVE_LINES,  # newest lines per live call in the list (what a live card shows)
)
from . import params
from .context import current_dashboard

bp = Blueprint("api", __name__)


@bp.get("/calls")
def list_calls() -> Response:
    limit = params.integer(request.args, "limit", 50, 1, 1000)
    offset = params.integer(request.args, "offset", 0, 0, 10**9)
    full = params.choice(request.args, "full", ("0", "1", "true", "false")) in ("1", "true")
    flt = params.call_filter(request.args)
    dash = current_dashboard()
    calls, total = dash.pipeline.history.page(flt, limit, offset)
    now = time.time()
    if full:
        rows = [jsoncodec.dumps(records.detail(c, now)) for c in _yielding(calls)]
    else:
        held = dash.store.completed
        rows = [
            # A call read from disk is a new object each time: cached, it would only crowd out the others.
            _summary_json(c, c.seq) if held.get(c.call_id) is c else jsoncodec.dumps(records.summary(c, now))
            for c in _yielding(calls)
        ]
    pagination = jsoncodec.dumps({"limit": limit, "offset": offset, "count": len(calls), "total": total})
    return Response(f'{{"data":[{",".join(rows)}],"pagination":{pagination}}}', mimetype="application/json")


def _yielding(calls: list[Call]) -> Iterator[Call]:
    """The calls, pausing between batches (:func:`~patter_dash.core.pipeline.paced`) so other requests run."""
    for batch in paced(calls):
        yield from batch


@lru_cache(maxsize=4096)
def _summary_json(call: Call, seq: int) -> str:
    """A finished call's history row, encoded once per version of the call.

    ``seq`` is part of the key: every change to a call gives it a new one. The
    newest pages are read over and over (the dashboard polls them), so this
    turns a page of 50 into a join of cached strings.
    """
    return jsoncodec.dumps(records.summary(call, time.time()))


#: Transcript characters one ``/calls/active`` page carries in all, shared
#: evenly by its calls: the page size, not the calls' length, bounds the body.
ACTIVE_PAGE_TEXT = 1_000_000


@bp.get("/calls/active")
def active_calls() -> Response:
    limit = params.integer(request.args, "limit", 50, 1, 1000)
    offset = params.integer(request.args, "offset", 0, 0, 10**9)
    store = current_dashboard().store
    total = len(store.active)
    calls = store.active_calls(limit, offset)
    now = time.time()
    share = ACTIVE_PAGE_TEXT // limit
    rows = []
    for call in _yielding(calls):
        item = records.summary(call, now)
        lines = call.transcript  # replaced whole, never shrunk in place: safe to read unlocked
        item["transcript"], item["transcript_partial"] = _tail(lines, share)
        item["transcript_lines"] = len(lines)
        rows.append(jsoncodec.dumps(item))
    pagination = jsoncodec.dumps({"limit": limit, "offset": offset, "count": len(rows), "total": total})
    body = f'{{"data":[{",".join(rows)}],"count":{len(rows)},"pagination":{pagination}}}'
    return Response(body, mimetype="application/json")


def _tail(lines: list[tuple[str, str, float | None]], budget: int) -> tuple[list[dict[str, object]], bool]:
    """The newest lines that fit ``budget`` characters (at most :data:`ACTIVE_LINES`), and whether any was left out.

    When even the newest line is longer than the budget, its start is kept:
    a live card still shows what is being said.
    """
    tail: list[dict[str, object]] = []
    cut = False
    for role, text, ts in reversed(lines[-ACTIVE_LINES:]):
        if len(text) > budget:
            if not tail:
                tail.append({"role": role, "text": text[:budget], "timestamp": ts})
            cut = True
            break
        budget -= len(text)
        tail.append({"role": role, "text": text, "timestamp": ts})
    tail.reverse()
    return tail, cut or len(tail) < len(lines)


@bp.get("/calls/<anypath:call_id>")
def call_detail(call_id: str) -> Response | tuple[Response, int]:
    dash = current_dashboard()
    call = dash.pipeline.history.get(call_id)  # memory, else disk
    if call is None:
        return jsonify(error="Call not found"), 404
    if call.active or dash.store.completed.get(call_id) is not call:
        # A live call's duration grows every second; a call read from disk is a new object each time.
        body = jsoncodec.dumps(records.detail(call, time.time()))
    else:
        body = _detail_json(call, call.seq)
    return Response(f'{{"data":{body}}}', mimetype="application/json")


@lru_cache(maxsize=1024)
def _detail_json(call: Call, seq: int) -> str:
    """A finished call's full record, encoded once per version (see :func:`_summary_json`)."""
    return jsoncodec.dumps(records.detail(call, time.time()))


@bp.get("/analytics/overview")
def overview() -> Response:
    start, end = params.period(request.args)
    return jsonify(data=current_dashboard().store.overview(start, end))


@bp.get("/analytics/costs")
def costs() -> Response:
    start, end = params.period(request.args)
    bucket = params.choice(request.args, "bucket", ("hour", "day"))
    return jsonify(data=current_dashboard().store.costs(start, end, bucket))


@bp.get("/health")
def health() -> Response:
    return jsonify(current_dashboard().health())
