"""OpenAPI: the machine-readable reference for every route (served at /api/v1/openapi.json).

:func:`document` builds an OpenAPI 3.1 document as a plain dict: the read API,
deleting calls, exports, both ingest routes, the SSE stream and the two WebSocket routes (which
OpenAPI cannot model; they appear as ``GET`` with a ``101`` response and the
protocol in the description), and Patter's own dashboard routes under their
own tag. Paths are relative to the server URL, which is
the dashboard's mount point (script root + ``PATTER_DASH_URL_PREFIX``), so a
generated client works under any prefix.

Shapes are not written here: every schema under ``components/schemas`` is
generated (JSON Schema 2020-12, which OpenAPI 3.1 takes as is) from the models
that validate events (:mod:`patter_dash.model.events`) and that describe the
answers (:mod:`patter_dash.model.views`). This module adds what is not a
shape: paths, parameters, security, status codes and their descriptions.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
from flask import Blueprint, Response, jsonify, request

from ..config import Settings
from ..model import annotations, events, views
from ..model.clean import MAX_TEXT_LENGTH
from ..model.events import EVENT_MODELS
from ..model.views import STREAM_TYPES
from .auth import COOKIE
from .context import API_PREFIX, current_dashboard
from . import params
from .params import SORTS

bp = Blueprint("openapi", __name__)

Schema = dict[str, Any]
V1 = API_PREFIX
REF = "#/components/schemas/{name}"


# ----------------------------------------------------------------- helpers


def ref(name: str) -> Schema:
    return {"$ref": REF.format(name=name)}


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> Schema:
    return json_body(ref("Error"), description)


def param(name: str, where: str, schema: Schema, description: str, **extra: Any) -> Schema:
    if where == "query":
        extra.setdefault("allowEmptyValue", True)  # every route reads ?x= as "x not given"
    return {"name": name, "in": where, "schema": schema, "description": description, **extra}


def param_ref(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


# ----------------------------------------------------------------- schemas

#: The models the paths name; msgspec adds every model they refer to.
MODELS: tuple[Any, ...] = (
    events.Envelope,
    events.Batch,
    *EVENT_MODELS.values(),
    views.CallList,
    views.FullCallList,
    views.ActiveCallList,
    views.CallAnswer,
    views.OverviewAnswer,
    views.CostsAnswer,
    views.ProvidersAnswer,
    views.Health,
    views.Deleted,
    views.CallDeletedFrame,
    annotations.CallPatch,
    views.CallUpdated,
    views.CallUpdatedFrame,
    views.AlertsAnswer,
    views.AlertFrame,
    views.Ack,
    views.PatterAck,
    views.Error,
    views.PatterRecord,
    views.PatterLiveCall,
    views.PatterAggregates,
    views.PatterDeleteRequest,
    views.PatterDeleted,
)


@lru_cache(maxsize=1)
def _generated() -> dict[str, Schema]:
    (envelope, *_), components = msgspec.json.schema_components(MODELS, ref_template=REF)
    for schema in components.values():
        # msgspec writes additionalProperties: false for closed records only; every other
        # model keeps what it does not declare (Patter's extra fields), so say so.
        if schema.get("type") == "object":
            schema.setdefault("additionalProperties", True)
    components["Envelope"] = {
        "description": (
            "One event: {type, data, id}. Strings and keys lose NUL characters, lone surrogates become U+FFFD, "
            f"text is cut at {MAX_TEXT_LENGTH:,} characters; numbers must be finite and within ±2**53 and nesting "
            "is bounded (else 400). A refused event is a 422 whose details name each field."
        ),
        **envelope,
    }
    components["PatterCall"] = {
        "description": (
            "The call dict Patter 0.7.0's notify_dashboard POSTs, classified Patter's way: status 'initiated' → "
            "outbound call initiated; else ended_at present → call end (with metrics); otherwise → call start."
        ),
        "anyOf": [
            {"allOf": [ref("CallInitiated"), {"properties": {"status": {"const": "initiated"}}, "required": ["status"]}]},
            {"allOf": [ref("CallEnd"), {"properties": {"ended_at": {"type": "number"}}, "required": ["ended_at"]}]},
            {"allOf": [ref("CallStart"), {"properties": {"ended_at": {"type": "null"}}}]},
        ],
    }
    return components


def schemas() -> dict[str, Schema]:
    """``components/schemas``: generated from the models, plus PatterCall (a classification rule, not a shape)."""
    return dict(_generated())


def parameters() -> dict[str, Schema]:
    when = {
        "anyOf": [
            {"type": "number", "minimum": -1e11, "maximum": 1e11},
            {"type": "string", "format": "date-time"},
            {"type": "string", "format": "date"},
        ]
    }
    zone = "ISO 8601 or epoch seconds; a value without a zone is UTC."
    return {
        "limit": param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "Page size."),
        "offset": param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}, "Calls to skip."),
        "turns": param(
            "turns", "query", {"type": "integer", "minimum": 0, "maximum": views.ACTIVE_TURNS, "default": views.ACTIVE_TURNS},
            f"Newest turns per live call (at most {views.ACTIVE_TURNS}, and {views.ACTIVE_PAGE_TURNS:,} / limit); "
            "0 leaves them out (turn_count still says how many).",
        ),
        "full": param("full", "query", {"enum": ["0", "1", "true", "false"]}, "1 or true: items are CallDetail."),
        "sort": param(
            "sort", "query", {"enum": list(SORTS), "default": SORTS[0]},
            "Newest first by end (ended_at, the default and the dashboard's history table: in the order the calls "
            "finished, as this dashboard received their end, which is Patter's order) or by start (started_at). "
            "Ties by completion.",
        ),
        "id": param(
            "id", "query", {"type": "string", "minLength": 1},
            "The call's id, percent-encoded: any id, including those a path cannot carry (active, ., .., a//b, /x).",
            required=True,
        ),
        "status": param("status", "query", {"type": "string", "maxLength": 32}, "Exact status, e.g. completed."),
        "direction": param("direction", "query", {"enum": ["inbound", "outbound"]}, "Call direction."),
        "from": param("from", "query", when, f"Calls started at or after this time. {zone}"),
        "to": param("to", "query", when, f"Calls started before this time (not before from). {zone}"),
        "q": param(
            "q", "query", {"type": "string", "maxLength": 256},
            (
                "Search over every retained call: words (all must be found, any order, case-insensitive, each "
                'inside the call id, caller, callee or one transcript line), "a quoted phrase", prefix* (a '
                "term already matches the start or any part of a word or number: +1555, CA-12). Punctuation "
                "is searched for literally; nothing is an operator. Nothing to search for is a 400."
            ),
        ),
        "provider_mode": param("provider_mode", "query", {"type": "string", "maxLength": 32}, "e.g. pipeline."),
        "tag": param(
            "tag", "query", {"type": "string", "maxLength": annotations.MAX_TAG_LENGTH},
            "Calls carrying this tag (exact, case-sensitive).",
        ),
        "has_notes": param(
            "has_notes", "query", {"enum": ["0", "1", "true", "false"]}, "1 or true: calls with notes; 0 or false: calls without.",
        ),
        **{
            f"{side}_{name}": param(
                f"{side}_{name}", "query", {"type": "number", "minimum": 0, "maximum": top},
                f"Calls whose {what} is at {'least' if side == 'min' else 'most'} this ({unit}); a call without one is left out."
                + (" Not below min_" + name + "." if side == "max" else ""),
            )
            for name, (top, unit), what in (
                (n, params.RANGES[n], w) for n, w in (
                    ("duration", "duration"), ("cost", "total cost"), ("latency", "response latency"),
                    ("interruptions", "number of interruptions (quality.interruptions)"),
                    ("dead_air", "dead air (quality.dead_air_ms)"),
                    ("talk_over", "talk-over (quality.talk_over_ms: measured recordings only)"),
                    ("tool_failures", "number of failed tool calls (quality.tool_failures)"),
                )
            )
            for side in ("min", "max")
        },
        "provider": param(
            "provider", "query", {"type": "string", "maxLength": 64},
            "Calls naming this provider for STT, LLM, TTS or telephony (exact, e.g. deepgram, twilio).",
        ),
        "model": param(
            "model", "query", {"type": "string", "maxLength": 128}, "Calls naming this STT, LLM or TTS model (exact, e.g. nova-3).",
        ),
        "bucket": param("bucket", "query", {"enum": ["hour", "day"]}, "Series bucket; default hour for spans up to two days, else day."),
        "format": param("format", "query", {"enum": ["json", "ndjson"]}, "json (one array) or ndjson (one call a line)."),
        "call_id": param("call_id", "path", {"type": "string", "minLength": 1}, "The call's id (Twilio CallSid etc.).", required=True),
        "types": param(
            "types", "query", {"type": "string"},
            f"Comma-separated event types to receive: {', '.join(STREAM_TYPES)}.",
        ),
        "stream_call_id": param("call_id", "query", {"type": "string", "maxLength": 256}, "Only this call's events."),
        "last_event_id": param(
            "last_event_id", "query", {"type": "integer", "minimum": 0},
            "Resume after this event (as the Last-Event-ID header does).",
        ),
        "Last-Event-ID": param("Last-Event-ID", "header", {"type": "string"}, "Resume after this event id (EventSource sends it)."),
        "before": param(
            "before", "query", when,
            f"Delete every finished call that started before this time (required). {zone}",
            required=True, allowEmptyValue=False,
        ),
        # Patter's own routes read their parameters Patter's way: a value they cannot use is the default, never a 400.
        "patter_limit": param(
            "limit", "query", {"type": "string"}, "Page size: an integer, held within 0..1000; anything else means 50 (as in Patter)."
        ),
        "patter_offset": param(
            "offset", "query", {"type": "string"}, "Calls to skip: an integer, negative means 0; anything else means 0 (as in Patter)."
        ),
        "patter_format": param("format", "query", {"type": "string"}, "csv for CSV; anything else (or nothing) for JSON (as in Patter)."),
        "patter_from": param(
            "from", "query", {"type": "string"},
            f"Calls started at or after this time. {zone} A value that is not a time is ignored (as in Patter).",
        ),
        "patter_to": param(
            "to", "query", {"type": "string"},
            f"Calls started at or before this time (inclusive, as in Patter). {zone} A value that is not a time is ignored.",
        ),
    }


# ------------------------------------------------------------------ paths

FILTERS = (
    "status", "direction", "from", "to", "q", "provider_mode", "tag", "has_notes",
    "min_duration", "max_duration", "min_cost", "max_cost", "min_latency", "max_latency", "provider", "model",
    "min_interruptions", "max_interruptions", "min_dead_air", "max_dead_air", "min_talk_over", "max_talk_over",
    "min_tool_failures", "max_tool_failures",
)


BAD_PARAM = {"400": error("A query parameter is invalid; the message names it.")}


def _get(
    name: str, tag: str, ok: Schema, params: tuple[str, ...] = (), *, errors: dict[str, Schema] = BAD_PARAM, description: str = ""
) -> Schema:
    operation: Schema = {
        "summary": name,
        "tags": [tag],
        "operationId": name,
        "parameters": [param_ref(n) for n in params],
        "responses": {"200": ok, **errors},
    }
    if description:
        operation["description"] = description
    return {"get": operation}


def _websocket(summary: str, tag: str, description: str, params: tuple[str, ...] = ()) -> Schema:
    return {
        "get": {
            "summary": summary,
            "tags": [tag],
            "operationId": summary,
            "description": description,
            "parameters": [param_ref(n) for n in params],
            "responses": {
                "101": {"description": "Switching Protocols: the WebSocket is open."},
                "400": error(
                    "Not a WebSocket upgrade request, a bad query parameter, or a malformed handshake "
                    "(Sec-WebSocket-Key missing or not 16 bytes of base64, Sec-WebSocket-Version not 13; "
                    "the answer carries Sec-WebSocket-Version: 13)."
                ),
                "403": error(
                    "The browser's Origin is neither this server (same scheme, host and port) nor in PATTER_DASH_CORS_ORIGINS."
                ),
            },
        }
    }


def paths(settings: Settings) -> dict[str, Schema]:
    history = ("limit", "offset", "full", "sort", *FILTERS)
    stream = ("types", "stream_call_id", "last_event_id", "Last-Event-ID")
    routes: dict[str, Schema] = {
        f"{V1}/calls": {
            **_get(
                "listCalls", "calls",
                json_body(
                    {"anyOf": [ref("CallList"), ref("FullCallList")]},
                    "Completed calls matching the filters, newest first (by completion; sort=started_at: by start), over all stored history: memory "
                    "and, with PATTER_DASH_DB, the calls older than memory holds. CallDetail items with full=1.",
                ),
                history,
            ),
            "delete": _delete_operation(
                "deleteCalls", ("before",),
                "Delete every finished call that started before `before`, from memory, the history file and "
                "analytics, and answer how many. Live calls are not touched (delete a stuck one by id). Done in "
                "batches of one transaction each; every batch is announced as one call_deleted event. Retention "
                "(PATTER_DASH_RETENTION_DAYS) does the same in the background.",
                {"400": error("before is missing or not a time.")},
            ),
        },
        f"{V1}/calls/active": _get(
            "listActiveCalls", "calls",
            json_body(
                ref("ActiveCallList"),
                "Live calls, newest first (by when the dashboard first saw each), one page; each with the newest lines "
                "of its transcript and its newest turns so far, within the page's budgets (see ActiveCall).",
            ),
            ("limit", "offset", "turns"),
        ),
        f"{V1}/calls/{{call_id}}": {
            **_get(
                "getCall", "calls",
                json_body(ref("CallAnswer"), "The call, live or completed (from the history file when memory no longer holds it)."),
                ("call_id",),
                errors={"404": error('No such call: {"error": "Call not found"}.')},
            ),
            "delete": _delete_operation(
                "deleteCall", ("call_id",),
                "Delete the call, live or finished, from memory, the history file and analytics; it does not come "
                "back after a restart, nor when an event it already had is sent again (event ids are remembered). "
                "Announced as a call_deleted event. A live call's later events (without a known id) start a new record.",
                {"404": error('No such call: {"error": "Call not found"}.')},
            ),
            "patch": _patch_operation(),
        },
        f"{V1}/call": {
            **_get(
                "getCallById", "calls",
                json_body(ref("CallAnswer"), "The call, as GET /calls/{call_id} answers it."),
                ("id",),
                errors={**BAD_PARAM, "404": error('No such call: {"error": "Call not found"}.')},
                description=(
                    "GET /calls/{call_id} with the id in the query string, so that every id is reachable: the path "
                    "form cannot carry the id active (that is the live list; %61ctive is decoded to it before "
                    "routing), nor ids that browsers and proxies rewrite (., .. and %2E%2E segments, empty segments "
                    "as in a//b or a leading /). DELETE /call?id= deletes as DELETE /calls/{call_id}."
                ),
            ),
            "delete": _delete_operation(
                "deleteCallById", ("id",),
                "DELETE /calls/{call_id} with the id in the query string (any id; see GET /call).",
                {**BAD_PARAM, "404": error('No such call: {"error": "Call not found"}.')},
            ),
            "patch": _patch_operation("annotateCallById", "id", by_query=True),
        },
        f"{V1}/analytics/overview": _get(
            "getOverview", "analytics", json_body(ref("OverviewAnswer"), "Totals for the period."), ("from", "to")
        ),
        f"{V1}/analytics/costs": _get(
            "getCosts", "analytics", json_body(ref("CostsAnswer"), "Cost totals and series."), ("from", "to", "bucket")
        ),
        f"{V1}/analytics/providers": _get(
            "getProviders", "analytics",
            json_body(ref("ProvidersAnswer"), "One row per provider (and model) of each kind, for the matching calls."),
            FILTERS,
            description=(
                "Compares each STT, LLM and TTS provider + model, telephony provider and voice mode (provider_mode) over "
                "every finished call matching the filters, in memory and in the history file: calls, minutes, cost per "
                "minute and per call, failure rate (failed, no-answer, busy, timeout), and P50/P95/P99 of the stage's "
                "latency and of the response latency. Percentiles are exact, over calls (each call's mean), by nearest "
                "rank: the ⌈p/100·n⌉-th smallest value. The answer is computed once per change of history."
            ),
        ),
        f"{V1}/analytics/quality": _get(
            "getQuality", "analytics",
            json_body({"type": "object"}, "Quality totals, averages and counts over the matching finished calls."),
            FILTERS,
            description=(
                "Conversation quality over every finished call matching the filters: totals and averages of talk-over, "
                "dead air, interruptions, the agent's time to first word, tool calls and failed tool calls, the calls "
                "with dead air, interruptions or failed tools, and how many were measured from their recording (the "
                "others from their events). An average is over the calls that have the figure. Computed once per "
                "change of history."
            ),
        ),
        f"{V1}/export/csv": _get(
            "exportCsv", "export",
            {
                "description": (
                    "Every matching completed call, one row each, streamed (attachment). Text cells starting with "
                    "= + - @ TAB or CR (also behind spaces, invisible characters or a BOM, or in fullwidth form) "
                    "get a leading ' so spreadsheets show them as text and never run them: "
                    "+15551234567 exports as '+15551234567. Numeric columns are plain numbers. A row that cannot "
                    "be encoded is skipped and counted (health: export.row_errors). HEAD answers the headers only."
                ),
                "headers": {"Content-Disposition": {"schema": {"type": "string"}, "description": "attachment; filename=..."}},
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            ("sort", *FILTERS),
        ),
        f"{V1}/export/json": _get(
            "exportJson", "export",
            {
                "description": ("Every matching completed call as CallDetail, streamed (attachment). No NaN or Infinity. A row that "
                                "cannot be encoded is skipped and counted (health: export.row_errors). HEAD answers the headers only."),
                "headers": {"Content-Disposition": {"schema": {"type": "string"}, "description": "attachment; filename=..."}},
                "content": {
                    "application/json": {"schema": {"type": "array", "items": ref("CallDetail")}},
                    "application/x-ndjson": {"schema": {"type": "string"}, "description": "One CallDetail per line."},
                },
            },
            ("format", "sort", *FILTERS),
        ),
        f"{V1}/alerts": _get(
            "getAlerts", "meta",
            json_body(ref("AlertsAnswer"), "Each alert rule (PATTER_DASH_ALERTS) with its state, what fires now and its last "
                      "notifications (AlertNotification, the webhook body), and each destination's delivery counters."),
            errors={},
        ),
        f"{V1}/health": _get("getHealth", "meta", json_body(ref("Health"), "Event thread, queue, store and subscriber state."), errors={}),
        f"{V1}/openapi.json": _get(
            "getOpenApi", "meta", json_body({"type": "object"}, "This document."), errors={}
        ),
        f"{V1}/events": _get(
            "streamEvents", "live",
            {
                "description": (
                    "Server-Sent Events: one 'event: <type>' with 'id: <seq>' and a JSON 'data:' line per applied "
                    "event (seq, type, call_id, call; lifecycle events and a call's first frame carry the whole summary, "
                    "transcript frames 'line' and the card fields a line can change, turn frames 'turn', 'cost_so_far' "
                    "and 'lines', the transcript lines the turn added; a line carries every field sent with it, as "
                    "TranscriptLine, and one with a turnIndex is shown above the lines just before it that have a "
                    "greater turnIndex, or the same one and a later role: user, assistant, others). Heartbeat comments keep it open; "
                    "call_deleted frames (CallDeletedFrame: seq, type, call_ids) say which calls were deleted "
                    "(a DELETE or the retention purge): drop them wherever they are shown; call_updated frames "
                    "(CallUpdatedFrame: seq, type, call_id, call) carry a call's summary after its tags, notes or "
                    "rating changed (a PATCH); alert_firing and "
                    "alert_resolved frames (AlertFrame) are alert rules changing state. "
                    "'reset', 'overflow', 'shutdown' and 'busy' events tell the reader to reconnect. HEAD answers the "
                    "headers only and never subscribes."
                ),
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            stream,
            errors={**BAD_PARAM, "503": error("Too many live subscribers; retry after Retry-After.")},
            description="Resume losslessly with Last-Event-ID while the event is still in the replay buffer.",
        ),
        f"{V1}/ws": _websocket(
            "liveWebSocket", "live",
            "WebSocket: the same events as /events, one text frame each: {\"id\": seq, \"event\": type, \"data\": {...}}. "
            "Accepts the same query parameters. Not fuzzable as plain HTTP.",
            ("types", "stream_call_id", "last_event_id"),
        ),
        f"{V1}/ingest": {"post": _ingest_operation(settings)},
        f"{V1}/ingest/ws": _websocket(
            "ingestWebSocket", "ingest",
            "WebSocket ingest: each text frame is an Envelope or a Batch; the server answers each with one frame, "
            "{\"ok\": true, ...Ack} or {\"ok\": false, \"error\", \"details\"} (nothing of a refused frame is applied). "
            "Authenticate with the Bearer header, as for POST /api/v1/ingest.",
        ),
        "/api/dashboard/ingest": {"post": _patter_ingest_operation(settings)},
        "/metrics": {"get": _metrics_operation(settings)},
        **_patter_paths(),
        **_recording_paths(),
    }
    if settings.UI:
        routes["/dashboard"] = {
            "get": {
                "summary": "dashboard",
                "tags": ["ui"],
                "operationId": "dashboard",
                "description": (
                    "The dashboard page. With ?token=<token>, answers 303 to the same URL without it and sets an "
                    "HttpOnly, SameSite=Lax session cookie; without credentials, the sign-in page (401)."
                ),
                "responses": {
                    "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                    "303": {"description": "Token exchanged for the session cookie."},
                    "401": {"description": "The sign-in page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                },
            }
        }
        routes["/dashboard/logout"] = {
            "post": {
                "summary": "logout",
                "tags": ["ui"],
                "operationId": "logout",
                "description": (
                    "Sign out: clears the session cookie the request carried (Set-Cookie with Max-Age=0) and "
                    "answers 303 to /dashboard. Needs no credentials, so a stale cookie is cleared too; the cookie "
                    "is SameSite=Lax, so a cross-site POST carries none and clears nothing."
                ),
                "security": [{}],  # no credentials needed
                "responses": {"303": {"description": "Signed out; the page now asks for the token."}},
            }
        }
    return routes


def _delete_operation(name: str, params: tuple[str, ...], description: str, errors: dict[str, Schema]) -> Schema:
    retry = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait before asking again."}}
    return {
        "summary": name,
        "tags": ["calls"],
        "operationId": name,
        "description": (
            f"{description} Authenticate with the Bearer header or the dashboard's session cookie (never ?token=). "
            "A browser's Origin must be this server or in PATTER_DASH_CORS_ORIGINS."
        ),
        "parameters": [param_ref(n) for n in params],
        "responses": {
            "200": json_body(ref("Deleted"), "Deleted: gone from memory, the history file and analytics."),
            **errors,
            "403": error("The request's Origin is another site (or a Host not allowed, with no token set)."),
            "503": {
                **error("History cannot be written now (disk full, read-only file), or the deletion took too long; "
                        "nothing is lost, retry after Retry-After (deleting is idempotent)."),
                "headers": retry,
            },
        },
    }


def _patch_operation(operation: str = "annotateCall", id_param: str = "call_id", by_query: bool = False) -> Schema:
    retry = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait before asking again."}}
    return {
        "summary": operation,
        "tags": ["calls"],
        "operationId": operation,
        "description": (
            ("PATCH /calls/{call_id} with the id in the query string (any id; see GET /call). " if by_query else "") +
            "Set the call's tags, notes or rating, live or finished; the fields left out stay as they are. Kept in "
            "the history file (with PATTER_DASH_DB) before the answer, announced as a call_updated event, and "
            "shown in the list, the detail and the exports; the tag and has_notes filters select by them. "
            "Authenticate with the Bearer header or the dashboard's session cookie (never ?token=). "
            "A browser's Origin must be this server or in PATTER_DASH_CORS_ORIGINS."
        ),
        "parameters": [param_ref(id_param)],
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("CallPatch")}}},
        "responses": {
            "200": json_body(ref("CallUpdated"), "The call's summary after the change."),
            "400": error(
                "Not JSON, not an object, empty, an unknown field, or a field out of bounds (more than 10 tags, a tag "
                "empty or over 32 characters or holding a control or invisible character or a comma, notes over "
                "2,000 characters, a rating not 1-5 or null); details name the field."
            ),
            "404": error('No such call: {"error": "Call not found"}.'),
            "403": error("The request's Origin is another site (or a Host not allowed, with no token set)."),
            "408": error("The body did not arrive within PATTER_DASH_BODY_TIMEOUT seconds; the connection is closed."),
            "413": error("Body larger than 32,768 bytes."),
            "415": error("Content-Type is not application/json."),
            "503": {
                **error("History cannot be written now (disk full, read-only file), or the change took too long; "
                        "retry after Retry-After (the same change again is harmless)."),
                "headers": retry,
            },
        },
    }


def _recording_paths() -> dict[str, Schema]:
    """The recording routes (web/recordings.py), in both forms: the id in the path, and ``/call...?id=``."""
    not_available = {
        "type": "object", "additionalProperties": False, "required": ["error", "recorded"],
        "properties": {"error": {"type": "string", "const": "recording not available"}, "recorded": {"type": "boolean"}},
    }

    def missing(none: str) -> Schema:
        return json_body(
            {"anyOf": [ref("Error"), not_available]},
            'No such call ({"error": "Call not found"}), or no recording can be served: {"error": "recording not available", '
            '"recorded": true} when the call names one (recording_path, or a file found but refused: missing, unreadable, '
            f"outside PATTER_DASH_RECORDINGS_DIRS, not 16-bit PCM){none} Why is in the server's log.",
        )
    peaks = {
        "type": "object",
        "properties": {"recorded": {"type": "boolean"}, "data": {"type": ["object", "null"], "properties": {
            "call_id": {"type": "string"},
            "duration": {"type": "number", "description": "Seconds of audio."},
            "sample_rate": {"type": "integer"},
            "buckets": {"type": "integer", "description": "Slices per channel (at most 1,000)."},
            "bucket_seconds": {"type": "number"},
            "channels": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string", "enum": ["caller", "agent", "mixed"]},
                "min": {"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 0}},
                "max": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
            }}},
        }}},
    }

    def operations(suffix: str, id_param: str, by_query: bool) -> dict[str, Schema]:
        form = " (the id in the query string: any id, see GET /call)" if by_query else ""
        get = _get(
            f"getRecording{suffix}", "recordings",
            {
                "description": "The whole WAV (200), or the one byte range asked for (206, Content-Range).",
                "headers": {"Accept-Ranges": {"schema": {"type": "string"}, "description": "bytes"}},
                "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
            },
            (id_param,),
            errors={**(BAD_PARAM if by_query else {}), "404": missing("; recorded false when it has none."),
                    "416": error("The Range is malformed or starts past the end; Content-Range: bytes */<size>.")},
            description=(
                f"The call's recording{form}: Patter's stereo WAV (left the caller, right the agent) or one uploaded "
                "with PUT. Range: one range answers 206; several answer the whole file (200). Served only from under "
                "PATTER_DASH_RECORDINGS_DIRS (default: the Patter log root followed) or the uploads directory, "
                "whatever path the call names."
            ),
        )
        get["get"]["responses"]["206"] = {"description": "The byte range asked for.",
                                         "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}
        get_peaks = _get(
            f"getRecordingPeaks{suffix}", "recordings",
            json_body(peaks, "Each channel's minimum and maximum (-1 to 1) in up to 1,000 slices, for a waveform; "
                      "data null and recorded false when the call has no recording."),
            (id_param,),
            errors={**(BAD_PARAM if by_query else {}), "404": missing(".")},
            description=f"The recording's waveform{form}, computed once per file and cached.",
        )
        put = {
            "summary": f"uploadRecording{suffix}",
            "tags": ["recordings"],
            "operationId": f"uploadRecording{suffix}",
            "description": (
                f"Keep a WAV as the call's recording{form} (DashboardClient.upload_recording sends it from the agent's "
                "host). The body is the file: RIFF/WAVE, 16-bit PCM, 1 or 2 channels, at most "
                "PATTER_DASH_RECORDING_MAX_BYTES. Stored beside the history file; replaces an earlier upload; "
                "deleted with the call. Authenticate with the Bearer header or the dashboard's session cookie "
                "(never ?token=). A browser's Origin must be this server or in PATTER_DASH_CORS_ORIGINS."
            ),
            "parameters": [param_ref(id_param)],
            # Any Content-Type is read as the file (the client sends audio/wav); octet-stream is what generic tools send.
            "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {
                "201": json_body({"type": "object"}, "Stored: call_id, bytes, channels, sample_rate, duration."),
                "200": json_body({"type": "object"}, "Stored, replacing an earlier upload."),
                "400": error("Not a WAV this dashboard plays (the message says why)" + (", or id is missing." if by_query else ".")),
                "403": error("The request's Origin is another site (or a Host not allowed, with no token set)."),
                "404": error('No such call: {"error": "Call not found"}.'),
                "408": error("The body did not arrive in time; the connection is closed."),
                "409": error("History is kept in memory only: there is nowhere to keep recordings."),
                "413": error("Larger than PATTER_DASH_RECORDING_MAX_BYTES."),
            },
        }
        get_quality = _get(
            f"getRecordingQuality{suffix}", "recordings",
            json_body(measured, "The recording's quality figures (ms and counts); data null and recorded false when the "
                      "call has no recording, measured false for a mono recording."),
            (id_param,),
            errors={**(BAD_PARAM if by_query else {}), "404": missing(".")},
            description=(
                f"Conversation quality measured from the call's stereo recording{form} (a frame-energy voice activity "
                "detector per channel, see the README): talk-over, dead air, interruptions, time to first word, and each "
                "side's speech time. Computed once per file; a finished call keeps the figures (its summary's quality "
                "block, the filters, exports and analytics read them from then on)."
            ),
        )
        return {"get": get["get"], "put": put}, get_peaks, get_quality

    measured = {
        "type": "object",
        "properties": {"recorded": {"type": "boolean"}, "measured": {"type": "boolean"}, "reason": {"type": "string"},
                       "data": {"type": ["object", "null"], "properties": {
                           "call_id": {"type": "string"},
                           **{k: {"type": ["integer", "null"], "minimum": 0} for k in (
                               "talk_over_ms", "dead_air_ms", "dead_air_count", "interruptions", "first_word_ms",
                               "caller_speech_ms", "agent_speech_ms", "duration_ms")},
                           "method": {"type": "string"},
                       }}},
    }
    path_ops, path_peaks, path_quality = operations("", "call_id", False)
    query_ops, query_peaks, query_quality = operations("ById", "id", True)
    return {
        f"{V1}/calls/{{call_id}}/recording": path_ops,
        f"{V1}/calls/{{call_id}}/recording/peaks": path_peaks,
        f"{V1}/calls/{{call_id}}/recording/quality": path_quality,
        f"{V1}/call/recording": query_ops,
        f"{V1}/call/recording/peaks": query_peaks,
        f"{V1}/call/recording/quality": query_quality,
    }


def _refusals() -> dict[str, Schema]:
    return {
        "400": error("Malformed JSON, NaN/Infinity, or nesting too deep."),
        "408": error("The body did not arrive within PATTER_DASH_BODY_TIMEOUT seconds; the connection is closed."),
        "413": error("Body larger than PATTER_DASH_MAX_BODY (chunked bodies included)."),
        "415": error("Content-Type is not application/json."),
        "422": error("Valid JSON, but not an acceptable event; details name each field and what it must be."),
        "503": error("Ingest queue full; retry after the Retry-After header."),
        "500": error("An event could not be applied (a server bug, logged); accepted shows which (seq 0)."),
    }


def _ingest_operation(settings: Settings) -> Schema:
    operation: Schema = {
        "summary": "ingest",
        "tags": ["ingest"],
        "operationId": "ingest",
        "description": "Events from a voice runtime in another process. Authenticate with the Bearer header only (no cookie).",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [ref("Envelope"), ref("Batch")]}}},
        },
        "responses": {
            "202": json_body(ref("Ack"), "Applied; answered once every event is in the store."),
            "200": json_body(ref("Ack"), "Every event was seen before (its id, or a line or call_end already held): nothing changed (duplicate: true)."),
            **_refusals(),
        },
    }
    if settings.TOKEN:
        operation["security"] = [{"bearerAuth": []}]  # the header only: a cookie would allow CSRF
    return operation


def _patter_ingest_operation(settings: Settings) -> Schema:
    operation: Schema = {
        "summary": "patterIngest",
        "tags": ["ingest"],
        "operationId": "patterIngest",
        "description": (
            "Patter's own dashboard push (getpatter.dashboard.persistence.notify_dashboard), body unchanged. "
            "Patter sends no token: local clients (a loopback address and no proxy header such as Forwarded, "
            "X-Forwarded-*, X-Real-IP or Via) are accepted without one while PATTER_DASH_LOOPBACK_INGEST "
            "is on (the default); others need the Bearer header."
        ),
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("PatterCall")}}},
        "responses": {
            "202": json_body(ref("PatterAck"), "Applied."),
            "200": json_body(ref("PatterAck"), "Already held (e.g. the same call_end from the callbacks): nothing changed."),
            **_refusals(),
        },
    }
    if settings.TOKEN:
        operation["security"] = [{"bearerAuth": []}, {}] if settings.LOOPBACK_INGEST else [{"bearerAuth": []}]
    return operation


def _metrics_operation(settings: Settings) -> Schema:
    text = {"schema": {"type": "string"}}
    operation: Schema = {
        "summary": "metrics",
        "tags": ["meta"],
        "operationId": "getMetrics",
        "description": (
            "This dashboard in the Prometheus text exposition format (OpenMetrics when the Accept header asks "
            "for application/openmetrics-text), built with prometheus-client: patter_dash_history_* gauges mirror "
            "the Analytics page over all retained history; counters and histograms count what this process saw "
            "complete since it started (per process). Caller-given label values (status, direction, provider, model, "
            "mode) are capped per metric; the rest are counted under 'other'. Takes the token like the API, or "
            "PATTER_DASH_METRICS_TOKEN as a Bearer header."
        ),
        "responses": {
            "200": {
                "description": "The metrics.",
                "content": {"text/plain": text, "application/openmetrics-text": text},
            },
        },
    }
    if settings.METRICS_TOKEN:
        usual = [{"bearerAuth": []}, {"queryToken": []}, {"sessionCookie": []}] if settings.TOKEN else [{}]
        operation["security"] = [*usual, {"metricsToken": []}]
    return operation


PATTER_TAG = "Patter compatibility"
PATTER_TAG_DESCRIPTION = (
    "Patter 0.7.0's own dashboard routes (getpatter/dashboard/routes.py), for Patter's dashboard page and the "
    "scripts written against it: Patter's shapes, event names and status codes over the same store, live stream, "
    "export and auth as /api/v1, which is the primary API. Where Patter is lenient (a bad limit, from or format), "
    "so are these: the default applies, never a 400."
)


def _patter_paths() -> dict[str, Schema]:
    def op(name: str, ok: Schema, params: tuple[str, ...] = (), errors: dict[str, Schema] | None = None,
           description: str = "") -> Schema:
        return _get(name, PATTER_TAG, ok, params, errors=errors or {}, description=description)["get"]

    not_found = {"404": error('No such call: {"error": "Not found"}.')}
    write = (
        " Authenticate as for DELETE under /api/v1 (the Bearer header, or the dashboard's session cookie); a "
        "browser's Origin must be this server or in PATTER_DASH_CORS_ORIGINS (else 403). Live calls are never "
        "deleted (as in Patter): they, unknown and blank ids are left out of the answer."
    )
    unavailable = {
        "403": error("The request's Origin is another site (or a Host not allowed, with no token set)."),
        "503": error("History cannot be written now (see health's history.error); retry after Retry-After."),
    }
    deleted = json_body(ref("PatterDeleted"), "The calls deleted from memory, the history file and analytics, sorted.")
    return {
        "/api/dashboard/calls": {"get": op(
            "patterListCalls",
            json_body({"type": "array", "items": ref("PatterRecord")}, "Finished calls, newest first: a bare list of full records."),
            ("patter_limit", "patter_offset"),
        )},
        "/api/dashboard/calls/{call_id}": {
            "get": op(
                "patterGetCall",
                json_body({"anyOf": [ref("PatterRecord"), ref("PatterLiveCall")]},
                          "The finished call, or the live one (its whole transcript and every turn so far)."),
                ("call_id",), not_found,
            ),
            "delete": {
                "summary": "patterDeleteCall", "tags": [PATTER_TAG], "operationId": "patterDeleteCall",
                "description": "Delete one finished call (Patter's DELETE: 200 whether or not it existed)." + write,
                "parameters": [param_ref("call_id")],
                "responses": {"200": deleted, **unavailable},
            },
        },
        "/api/dashboard/calls/delete": {"post": {
            "summary": "patterDeleteCalls", "tags": [PATTER_TAG], "operationId": "patterDeleteCalls",
            "description": "Delete finished calls by id; the body is read as JSON whatever its Content-Type, as Patter reads it." + write,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("PatterDeleteRequest")}}},
            "responses": {
                "200": deleted,
                "400": error("The body is not a JSON object with a call_ids list: {\"error\": \"Expected JSON body {'call_ids': [...]}\"}."),
                "408": error("The body did not arrive within PATTER_DASH_BODY_TIMEOUT seconds."),
                "413": error("Body larger than PATTER_DASH_MAX_BODY."),
                **unavailable,
            },
        }},
        "/api/dashboard/active": {"get": op(
            "patterActiveCalls",
            json_body(
                {"type": "array", "items": ref("PatterLiveCall")},
                "Every live call, in the order first seen, each with its newest lines and turns within the budgets of "
                "GET /api/v1/calls/active, shared by the calls there are (one live call: 100 turns, 1,000,000 characters).",
            ),
        )},
        "/api/dashboard/aggregates": {"get": op(
            "patterAggregates", json_body(ref("PatterAggregates"), "Totals over every finished call.")
        )},
        "/api/dashboard/events": {"get": op(
            "patterStreamEvents",
            {
                "description": (
                    "Server-Sent Events with Patter's names and data (MetricsStore._publish): call_initiated {call_id, "
                    "caller, callee, direction, status}, call_start {call_id, caller, callee, direction}, call_status "
                    "{call_id, status}, transcript_line {call_id, turnIndex, role, text} (user and assistant lines), "
                    "turn_complete {call_id, turn: TurnRecord}, call_end {call_id, metrics: PatterMetrics or null}, "
                    "calls_deleted {call_ids}. Each carries an 'id:' (the /api/v1/events sequence number), so "
                    "EventSource resumes losslessly with Last-Event-ID; heartbeats, 'reset', 'overflow', 'shutdown' and "
                    "'busy' are as in /api/v1/events. HEAD answers the headers only and never subscribes."
                ),
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            errors={"503": error("Too many live subscribers; retry after Retry-After.")},
        )},
        "/api/dashboard/export/calls": {"get": op(
            "patterExportCalls",
            {
                "description": (
                    "Patter's export, streamed (attachment; filename=patter_calls.csv or .json). CSV: Patter's columns "
                    "(call_id, caller, callee, direction, started_at, ended_at, duration_s, cost_total, cost_stt, cost_tts, "
                    "cost_llm, cost_telephony, avg_latency_ms, turns_count, provider_mode), times in epoch seconds, text "
                    "cells formula-safe as in /api/v1/export/csv. JSON: an array of PatterRecord. Without from/to, every "
                    "finished call newest first; with them, those that started in the range, in the order they finished. "
                    "HEAD answers the headers only."
                ),
                "headers": {"Content-Disposition": {"schema": {"type": "string"}, "description": "attachment; filename=..."}},
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "array", "items": ref("PatterRecord")}},
                },
            },
            ("patter_format", "patter_from", "patter_to"),
        )},
    }


# --------------------------------------------------------------- document


def document(server_url: str, settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a dashboard mounted at ``server_url``."""
    from .. import __version__

    settings = settings or Settings()
    routes = paths(settings)
    guarded = settings.TOKEN is not None
    # Every route refuses a request without the token, or (with no token set) one for a foreign Host.
    code, refusal = ("401", "Missing or wrong token.") if guarded else (
        "403", "Host not allowed: no token is set and the Host is neither loopback nor in PATTER_DASH_ALLOWED_HOSTS."
    )
    for item in routes.values():
        for operation in item.values():
            if guarded and operation["operationId"] == "logout":
                continue  # signing out needs no token
            operation["responses"].setdefault(code, error(refusal))
            if guarded and operation["operationId"] in ("deleteCall", "deleteCalls", "annotateCall"):
                operation["security"] = [{"bearerAuth": []}, {"sessionCookie": []}]  # never ?token=
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "patter-dash",
            "version": __version__,
            "description": (
                "Live call monitoring for Patter voice agents. Read routes answer {\"data\": ...} like Patter 0.7.0's "
                "own /api/v1. Errors are JSON {\"error\", \"details\"}. With PATTER_DASH_TOKEN set, send "
                "'Authorization: Bearer <token>' (or ?token=, or the browser session cookie). An empty query "
                "parameter counts as not given."
            ),
        },
        "servers": [{"url": server_url, "description": "The dashboard's mount point."}],
        "tags": [
            *({"name": t} for t in ("calls", "analytics", "export", "live", "ingest", "meta", "ui")),
            {"name": PATTER_TAG, "description": PATTER_TAG_DESCRIPTION},
        ],
        "paths": routes,
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": COOKIE},
                "metricsToken": {
                    "type": "http", "scheme": "bearer", "description": "PATTER_DASH_METRICS_TOKEN: opens GET /metrics only.",
                },
            },
        },
        **({"security": [{"bearerAuth": []}, {"queryToken": []}, {"sessionCookie": []}]} if guarded else {}),
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    settings = current_dashboard().settings
    # Relative to this document's own URL: "" would mean the document itself.
    server_url = (request.script_root + settings.URL_PREFIX) or "/"
    return jsonify(document(server_url, settings))
