"""API: the routes under ``/api/v1`` for history, live calls, detail, analytics, health, and deleting calls.

Response shapes follow Patter 0.7.0's own ``/api/v1`` routes (``{"data": ...}``)
so clients written for Patter work unchanged. Every read is served from the
store's indexes and running aggregates, and history older than memory from
the journal (:mod:`patter_dash.core.history`, off the gevent loop): no route
scans all calls unless a filter asks it to. Deletions go through the
pipeline's one writer (journal first, then memory and totals) and answer once
they are done.
"""

from __future__ import annotations

import time
from weakref import WeakKeyDictionary
from collections.abc import Iterator
from functools import lru_cache

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..core import conversation, providers
from ..core.pipeline import Pipeline, paced
from ..model import jsoncodec, records
from ..model.annotations import parse_patch
from ..model.clean import ValidationError, parse_json
from ..model.records import LINE_EXTRA, LINE_TEXT, Call, Line, Turn
from ..model.views import (  # the bounds of a live page, one source with its schema
    ACTIVE_LINES,
    ACTIVE_PAGE_TEXT,
    ACTIVE_PAGE_TURNS,
    ACTIVE_TURNS,
)
from . import auth, params
from .context import current_dashboard
from .deadline import read_bounded

bp = Blueprint("api", __name__)


@bp.get("/calls")
def list_calls() -> Response:
    limit = params.integer(request.args, "limit", 50, 1, 1000)
    offset = params.integer(request.args, "offset", 0, 0, 10**9)
    full = params.choice(request.args, "full", ("0", "1", "true", "false")) in ("1", "true")
    flt = params.call_filter(request.args)
    order = params.sort(request.args)
    dash = current_dashboard()
    _forget_deleted(dash.pipeline)
    calls, total, exact = dash.pipeline.history.page(flt, limit, offset, order)
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
        if flt.query:
            # Where q was found, beside the cached row (the row is the same for every query).
            rows = [
                f'{row[:-1]},"match":{jsoncodec.dumps(records.search_match(c, flt.query))}}}'
                for row, c in zip(rows, calls)
            ]
    pagination = {"limit": limit, "offset": offset, "count": len(calls), "total": total}
    if not exact:
        pagination["total_exact"] = False
    return Response(f'{{"data":[{",".join(rows)}],"pagination":{jsoncodec.dumps(pagination)}}}', mimetype="application/json")


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


@bp.get("/calls/active")
def active_calls() -> Response:
    limit = params.integer(request.args, "limit", 50, 1, 1000)
    offset = params.integer(request.args, "offset", 0, 0, 10**9)
    # The page size, not the calls' length, bounds the body: text and turns are shared evenly by its calls.
    most_turns = min(params.integer(request.args, "turns", ACTIVE_TURNS, 0, ACTIVE_TURNS), ACTIVE_PAGE_TURNS // limit)
    share = ACTIVE_PAGE_TEXT // limit
    store = current_dashboard().store
    total = len(store.active)
    calls = store.active_calls(limit, offset)
    now = time.time()
    rows = []
    for call in _yielding(calls):
        item = records.summary(call, now)
        lines = call.transcript  # replaced whole, never shrunk in place: safe to read unlocked
        item["transcript"], item["transcript_partial"] = _tail(lines, share)
        item["transcript_lines"] = len(lines)
        item["turns"], item["turns_partial"] = _newest_turns(call.turns, most_turns, share)  # a tuple: replaced whole
        rows.append(jsoncodec.dumps(item))
    pagination = jsoncodec.dumps({"limit": limit, "offset": offset, "count": len(rows), "total": total})
    body = f'{{"data":[{",".join(rows)}],"count":{len(rows)},"pagination":{pagination}}}'
    return Response(body, mimetype="application/json")


def _extra_size(extra: dict[str, object] | None) -> int:
    return len(jsoncodec.dumpb(extra)) if extra else 0


def _tail(lines: list[Line], budget: int) -> tuple[list[dict[str, object]], bool]:
    """The newest lines that fit ``budget`` characters (at most :data:`ACTIVE_LINES`), and whether any was left out.

    A line costs its text and the other fields kept with it. When even the
    newest line is longer than the budget, its start is kept (with its fields
    when they fit): a live card still shows what is being said. The lines are
    given in reading order.
    """
    tail: list[Line] = []
    cut = False
    for line in reversed(lines[-ACTIVE_LINES:]):
        extra = line[LINE_EXTRA]
        extra_size = _extra_size(extra)
        size = len(line[LINE_TEXT]) + extra_size
        if size > budget:
            if not tail:
                if extra_size > budget:  # the fields are what is long: the words matter more
                    extra, extra_size = None, 0
                role, text, timestamp, _ = line
                tail.append((role, text[: budget - extra_size], timestamp, extra))
            cut = True
            break
        budget -= size
        tail.append(line)
    tail.reverse()
    return [records.line_view(line) for line in records.ordered(tail)], cut or len(tail) < len(lines)


def _newest_turns(turns: tuple[Turn, ...], most: int, budget: int) -> tuple[list[dict[str, object]], bool]:
    """The newest ``most`` turns whose texts and other fields fit ``budget`` characters, oldest first; and whether any was left out.

    When even the newest turn is longer, it comes with its texts cut to the
    budget and without its unmodelled fields (those may be what is long).
    """
    views: list[dict[str, object]] = []
    cut = False
    for turn in reversed(turns[len(turns) - most:] if most else ()):
        view = records.turn_view(turn)
        user, agent = view["user_text"] or "", view["agent_text"] or ""
        size = len(user) + len(agent) + _extra_size(turn[records.EXTRA])
        if size > budget:
            if not views:
                trimmed = records.turn_view((*turn[: records.EXTRA], None))
                trimmed["user_text"] = user = user[:budget]
                trimmed["agent_text"] = agent[: budget - len(user)]
                views.append(trimmed)
            cut = True
            break
        budget -= size
        views.append(view)
    views.reverse()
    return views, cut or len(views) < len(turns)


@bp.get("/calls/<anypath:call_id>")
def call_detail(call_id: str) -> Response | tuple[Response, int]:
    dash = current_dashboard()
    _forget_deleted(dash.pipeline)
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


@bp.delete("/calls/<anypath:call_id>")
@auth.write
def delete_call(call_id: str) -> Response | tuple[Response, int]:
    """Delete one call, live or finished, from memory, disk and analytics."""
    dash = current_dashboard()
    deleted = dash.pipeline.delete([call_id])
    if not deleted:
        return jsonify(error="Call not found"), 404
    return jsonify(count=len(deleted), call_ids=deleted)


#: Bytes a PATCH body may have: 10 tags and 2,000 characters of notes fit many times over.
PATCH_BODY = 32_768


@bp.patch("/calls/<anypath:call_id>")
@auth.write
def annotate_call(call_id: str) -> Response | tuple[Response, int]:
    """Set a call's tags, notes or rating (live or finished); answered once journaled and announced."""
    if request.mimetype != "application/json":
        return jsonify(error="Content-Type must be application/json"), 415
    too_large = RequestEntityTooLarge(f"body larger than {PATCH_BODY} bytes")
    try:
        changes = parse_patch(parse_json(read_bounded(PATCH_BODY, current_dashboard().settings.BODY_TIMEOUT, too_large)))
    except ValidationError as exc:
        # 400, not ingest's 422: every refusal here is of the body itself, and the details name the field.
        return jsonify(error=exc.message, details=exc.details), 400
    call = current_dashboard().pipeline.annotate(call_id, changes)
    if call is None:
        return jsonify(error="Call not found"), 404
    return Response(f'{{"data":{jsoncodec.dumps(records.summary(call, time.time()))}}}', mimetype="application/json")


@bp.delete("/calls")
@auth.write
def delete_calls() -> Response:
    """Delete every finished call that started before ``before`` (live calls stay)."""
    before = params.timestamp(request.args, "before")
    if before is None:
        raise params.BadParam("before", "is required: every finished call that started before this time is deleted")
    count = current_dashboard().pipeline.delete_before(before)
    return jsonify(count=count, before=before)


@bp.get("/call")
def call_by_id() -> Response | tuple[Response, int]:
    """``GET /calls/{id}`` with the id in the query string, so that every id is reachable.

    A path cannot carry some ids: ``active`` is the live list's route, a path is
    decoded before routing (``%61ctive`` is ``active`` too), browsers and proxies
    resolve ``.`` and ``..`` segments (``%2E%2E`` included) and merge or refuse
    empty ones (``a//b``, a leading ``/``). A query parameter carries any text.
    """
    return call_detail(_query_id())


# A view of its own, not a method of call_by_id: the auth rules are a view's (auth.write is for writes only).
@bp.delete("/call")
@auth.write
def delete_call_by_id() -> Response | tuple[Response, int]:
    """``DELETE /calls/{id}`` with the id in the query string (see :func:`call_by_id`)."""
    return delete_call(_query_id())


@bp.patch("/call")
@auth.write
def annotate_call_by_id() -> Response | tuple[Response, int]:
    """``PATCH /calls/{id}`` with the id in the query string (see :func:`call_by_id`); the dashboard uses this one."""
    return annotate_call(_query_id())


def _query_id() -> str:
    call_id = request.args.get("id")
    if not call_id:
        raise params.BadParam("id", "is required: the call's id, percent-encoded")
    return call_id


def _forget_deleted(pipeline: Pipeline) -> None:
    """After any deletion (a request, the retention purge), drop the encoded rows.

    A deleted call's text must not stay in memory, nor be served, through the cache.
    """
    if _encoded_after.get(pipeline) != pipeline.deletions:
        _summary_json.cache_clear()
        _detail_json.cache_clear()
        _encoded_after[pipeline] = pipeline.deletions


#: Per pipeline (per app), the deletions its cached rows have seen.
_encoded_after: WeakKeyDictionary[Pipeline, int] = WeakKeyDictionary()


@bp.get("/analytics/overview")
def overview() -> Response:
    start, end = params.period(request.args)
    return jsonify(data=current_dashboard().store.overview(start, end))


@bp.get("/analytics/costs")
def costs() -> Response:
    start, end = params.period(request.args)
    bucket = params.choice(request.args, "bucket", ("hour", "day"))
    return jsonify(data=current_dashboard().store.costs(start, end, bucket))


@bp.get("/analytics/providers")
def provider_comparison() -> Response:
    """Each STT/LLM/TTS provider + model, telephony provider and voice mode, over all retained history.

    The history filters (``from``/``to``, ``status``, ``direction``, ``q``,
    ``provider_mode``) choose the calls; P50/P95/P99 are exact, nearest rank
    over calls (see :mod:`patter_dash.core.providers`).
    """
    flt = params.call_filter(request.args)
    return jsonify(data=providers.compare(current_dashboard().pipeline, flt))


@bp.get("/analytics/quality")
def conversation_quality() -> Response:
    """Conversation quality over the finished calls the history filters choose (see :mod:`patter_dash.core.conversation`)."""
    flt = params.call_filter(request.args)
    return jsonify(data=conversation.totals(current_dashboard().pipeline, flt))


@bp.get("/health")
def health() -> Response:
    return jsonify(current_dashboard().health())
