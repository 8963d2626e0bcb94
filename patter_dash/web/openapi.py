"""OpenAPI: the machine-readable reference for every route (served at /api/v1/openapi.json).

:func:`document` builds an OpenAPI 3.1 document as a plain dict: the read API,
exports, both ingest routes, the SSE stream and the two WebSocket routes (which
OpenAPI cannot model; they appear as ``GET`` with a ``101`` response and the
protocol in the description). Paths are relative to the server URL, which is
the dashboard's mount point (script root + ``PATTER_DASH_URL_PREFIX``), so a
generated client works under any prefix. Vocabulary and limits come from
:mod:`patter_dash.model.events`, so the document cannot drift from the validator.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..config import Settings
from ..model.clean import MAX_TEXT_LENGTH
from ..model.events import (
    COST_KEYS,
    EVENT_TYPES,
    LATENCY_KEYS,
    MAX_ID_LENGTH,
    PERCENTILE_KEYS,
)
from .auth import COOKIE
from .context import API_PREFIX, current_dashboard

bp = Blueprint("openapi", __name__)

Schema = dict[str, Any]
COMPONENTS = ("stt", "tts", "llm", "telephony")
V1 = API_PREFIX


# ----------------------------------------------------------------- helpers


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(type_name: str) -> Schema:
    return {"type": [type_name, "null"]}


def obj(properties: dict[str, Schema], required: tuple[str, ...] | None = None, **extra: Any) -> Schema:
    """An object schema; every property is required unless ``required`` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        **extra,
    }


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


def _numbers(keys: tuple[str, ...], **extra: Any) -> Schema:
    return obj({k: {"type": "number"} for k in keys}, **extra)


def _strings(keys: tuple[str, ...]) -> Schema:
    return obj({k: {"type": "string"} for k in keys})


def _latency() -> Schema:
    return {
        "type": "object",
        "description": "Patter's LatencyBreakdown, in milliseconds; unknown fields are kept.",
        "properties": {k: nullable("number") for k in LATENCY_KEYS},
        "additionalProperties": True,
    }


def _turn() -> Schema:
    return {
        "type": "object",
        "description": "Patter's TurnMetrics. Turn 0 is the greeting (empty user_text). Unknown fields are kept.",
        "properties": {
            "turn_index": nullable("number"),
            "user_text": {"type": "string"},
            "agent_text": {"type": "string", "description": '"[interrupted]" marks a barged-in turn.'},
            "latency": ref("Latency"),
            "stt_audio_seconds": nullable("number"),
            "tts_characters": nullable("number"),
            "timestamp": nullable("number"),
        },
        "required": ["turn_index", "user_text", "agent_text", "latency"],
        "additionalProperties": True,
    }


def _call_metrics() -> Schema:
    return {
        "type": "object",
        "description": (
            "Patter's CallMetrics for the call, without its turns (they are the call's own `turns`). "
            "History rows carry latency_avg, latency_p50 and latency_p95 and the provider fields; the "
            "detail adds latency_p90, latency_p99 and every other field Patter sent (*_model, "
            "context_tokens, ...), passed through."
        ),
        "properties": {
            "call_id": {"type": "string"},
            "duration_seconds": nullable("number"),
            "cost": {
                "type": "object",
                "properties": {k: nullable("number") for k in COST_KEYS},
                "required": list(COST_KEYS),
            },
            **{name: {"oneOf": [ref("Latency"), {"type": "null"}]} for name in PERCENTILE_KEYS},
        },
        "required": ["call_id", "duration_seconds", "cost", "latency_avg", "latency_p50", "latency_p95"],
        "additionalProperties": True,
    }


def _call_summary() -> Schema:
    return obj(
        {
            "call_id": {"type": "string"},
            "caller": {"type": "string", "description": "E.164 number, or empty (outbound media streams carry none)."},
            "callee": {"type": "string"},
            "direction": {"type": "string", "description": "inbound, outbound, or empty when never reported."},
            "status": {"type": "string", "description": "in-progress, initiated, completed, no-answer, busy, failed, timeout (closed when idle), ..."},
            "started_at": {"type": "number", "description": "Epoch seconds."},
            "ended_at": {**nullable("number"), "description": "Epoch seconds; null while the call is live."},
            "duration_seconds": {**nullable("number"), "description": "So far, for a live call."},
            "cost": ref("Cost"),
            "latency_avg_ms": {**nullable("number"), "description": "Mean response latency (agent_response_ms, else total_ms)."},
            "latency_p95_ms": nullable("number"),
            "provider_mode": {"type": "string"},
            "providers": _strings(COMPONENTS),
            "models": _strings(("stt", "tts", "llm")),
            "turn_count": {"type": "integer", "minimum": 0},
            "flags": {
                "type": "array",
                "items": {"type": "string"},
                "description": (
                    "Data-quality notes: no_start, late_turn, late_status, clock_skew, transcript_truncated "
                    "(lines were dropped, see dropped_lines), evicted_idle (a live call closed as status timeout "
                    "to make room under PATTER_DASH_MAX_ACTIVE_CALLS)."
                ),
            },
            "metrics": ref("CallMetrics"),
        },
        description="The light view of a call: what the history table shows, without transcript or turns.",
    )


def _call_detail() -> Schema:
    return {
        "description": "The full record: the summary plus transcript, every turn, status history and unknown fields.",
        "allOf": [
            ref("CallSummary"),
            obj(
                {
                    "transcript": {"type": "array", "items": ref("TranscriptLine")},
                    "turns": {"type": "array", "items": ref("Turn")},
                    "status_history": {
                        "type": "array",
                        "items": obj({"status": {"type": "string"}, "at": {"type": "number"}}),
                    },
                    "dropped_lines": {
                        "type": "integer",
                        "minimum": 0,
                        "description": (
                            "Transcript lines not kept: past 10,000 lines or PATTER_DASH_MAX_CALL_TEXT characters "
                            "(the call is then flagged transcript_truncated)."
                        ),
                    },
                    "extra": {
                        "type": "object",
                        "additionalProperties": True,
                        "description": "Top-level fields Patter sent that are not modelled (e.g. custom_params).",
                    },
                },
                required=("transcript", "turns", "status_history", "dropped_lines"),
            ),
        ],
    }


def _active_call() -> Schema:
    return {
        "allOf": [
            ref("CallSummary"),
            obj(
                {
                    "transcript": {
                        "type": "array",
                        "items": ref("TranscriptLine"),
                        "description": (
                            "The newest lines (at most 200) that fit this call's share of the page's 1,000,000-character "
                            "transcript budget (1,000,000 / limit); when even the newest line is longer, its start. "
                            "The whole transcript is in GET /calls/{call_id}."
                        ),
                    },
                    "transcript_lines": {"type": "integer", "minimum": 0, "description": "Lines the call holds."},
                    "transcript_partial": {"type": "boolean", "description": "Some of the call's lines or text are left out here."},
                }
            ),
        ]
    }


def _overview() -> Schema:
    return obj(
        {
            "total_calls": {"type": "integer", "minimum": 0},
            "total_minutes": {"type": "number"},
            "avg_duration": {"type": "number", "description": "Seconds."},
            "avg_latency_ms": {"type": "number"},
            "p95_latency_ms": {**nullable("number"), "description": "P95 over calls of each call's mean latency (within 0.5 %)."},
            "total_cost": {"type": "number", "description": "USD."},
            "cost_breakdown": _numbers(COMPONENTS),
            "active_calls": {"type": "integer", "minimum": 0},
            "calls_by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        description="Totals over completed calls started in the period (all of history without from/to).",
    )


def _costs() -> Schema:
    point = obj(
        {
            "t": {"type": "integer", "description": "Bucket start, epoch seconds (UTC hour or day)."},
            "calls": {"type": "integer"},
            "minutes": {"type": "number"},
            "cost": _numbers((*COMPONENTS, "total")),
            "avg_latency_ms": {"type": "number"},
            "p95_latency_ms": nullable("number"),
        }
    )
    return obj(
        {
            "total_cost": {"type": "number"},
            "breakdown": _numbers(COMPONENTS),
            "calls_analyzed": {"type": "integer", "minimum": 0},
            "total_minutes": {"type": "number"},
            "period": obj({"from": nullable("number"), "to": nullable("number")}),
            "bucket": {"enum": ["hour", "day"]},
            "series": {"type": "array", "items": point},
        },
        description="Exact cost totals (summed in integer nano-dollars) and a per-bucket series.",
    )


def _health() -> Schema:
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    return obj(
        {
            "status": {"enum": ["ok", "starting"]},
            "uptime_seconds": {"type": "number"},
            "pid": {"type": "integer"},
            "queue": obj({"depth": {"type": "integer"}, "capacity": {"type": "integer"}}),
            "events": counts,
            "store": counts,
            "subscribers": counts,
            "auth": obj(
                {"token": {"type": "boolean"}, "loopback_ingest": {"type": "boolean"}},
                description=(
                    "token: PATTER_DASH_TOKEN is set. loopback_ingest: POST /api/dashboard/ingest is accepted "
                    "without the token from local clients (a token is set and PATTER_DASH_LOOPBACK_INGEST is on)."
                ),
            ),
            "export": obj(
                {
                    "open": {"type": "integer", "description": "Exports being streamed now (each holds a snapshot)."},
                    "row_errors": {"type": "integer", "description": "Rows skipped because they could not be encoded."},
                    "failed": {"type": "integer", "description": "Exports cut short by an unexpected error."},
                }
            ),
        }
    )


# ---------------------------------------------------------- ingest schemas

_LINE = obj({"role": nullable("string"), "text": nullable("string"), "timestamp": nullable("number")}, required=())


def _event_data(extra: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    """``data`` of one event type: the identity fields every type may carry, plus its own."""
    return {
        "type": "object",
        "properties": {
            "call_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            "caller": nullable("string"),
            "callee": nullable("string"),
            "direction": nullable("string"),
            "status": nullable("string"),
            "timestamp": nullable("number"),
            "started_at": nullable("number"),
            **extra,
        },
        "required": ["call_id", *required],
        "additionalProperties": True,
    }


def _camel(event_type: str) -> str:
    return "".join(part.title() for part in event_type.split("_"))


def _event_schemas() -> dict[str, Schema]:
    cost = {"type": "object", "properties": {k: nullable("number") for k in COST_KEYS}}
    data = {
        "call_initiated": _event_data({}),
        "call_start": _event_data({}),
        "transcript": _event_data(
            {"role": {"type": "string"}, "text": {"type": "string", "description": f"Truncated to {MAX_TEXT_LENGTH} characters."}},
            ("role", "text"),
        ),
        "turn": _event_data({"turn": ref("TurnInput"), "cost_so_far": {**cost, "type": ["object", "null"]}}, ("turn",)),
        "call_status": _event_data({"status": {"type": "string"}}, ("status",)),
        "call_end": _event_data(
            {
                "ended_at": nullable("number"),
                "transcript": {"type": ["array", "null"], "items": _LINE},
                "conversation_history": {"type": ["array", "null"], "items": _LINE, "description": "Preferred over transcript."},
                "metrics": {"type": ["object", "null"], "additionalProperties": True, "description": "Patter's CallMetrics."},
            }
        ),
    }
    schemas: dict[str, Schema] = {}
    for event_type, body in data.items():
        name = _camel(event_type)
        schemas[f"{name}Data"] = body
        schemas[f"{name}Envelope"] = obj(
            {
                "type": {"const": event_type},
                "id": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "maxLength": MAX_ID_LENGTH,
                    "description": "Optional idempotency key: a replayed id is acknowledged, not applied again.",
                },
                "data": ref(f"{name}Data"),
            },
            required=("type", "data"),
        )
    schemas["Envelope"] = {
        "description": "One event. Strings lose NUL characters and lone surrogates; numbers must be finite.",
        "oneOf": [ref(f"{_camel(t)}Envelope") for t in EVENT_TYPES],
        "discriminator": {
            "propertyName": "type",
            "mapping": {t: f"#/components/schemas/{_camel(t)}Envelope" for t in EVENT_TYPES},
        },
    }
    schemas["TurnInput"] = {
        "type": "object",
        "properties": {
            "turn_index": nullable("number"),
            "user_text": nullable("string"),
            "agent_text": nullable("string"),
            "timestamp": nullable("number"),
            "stt_audio_seconds": nullable("number"),
            "tts_characters": nullable("number"),
            "latency": {"type": ["object", "null"], "additionalProperties": nullable("number")},
        },
        "additionalProperties": True,
    }
    return schemas


def schemas() -> dict[str, Schema]:
    return {
        "Error": obj(
            {
                "error": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": obj({"field": {"type": "string"}, "error": {"type": "string"}}),
                    "description": "For a refused body: each bad field and what it must be.",
                },
            },
            required=("error",),
        ),
        "Cost": _numbers((*COMPONENTS, "total"), description="USD, rounded to 6 decimals."),
        "Latency": _latency(),
        "Turn": _turn(),
        "TranscriptLine": obj({"role": {"type": "string"}, "text": {"type": "string"}, "timestamp": nullable("number")}),
        "CallMetrics": _call_metrics(),
        "CallSummary": _call_summary(),
        "CallDetail": _call_detail(),
        "ActiveCall": _active_call(),
        "Pagination": obj(
            {
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
                "count": {"type": "integer", "description": "Items in this page."},
                "total": {"type": "integer", "description": "Calls matching the filters (live calls, for /calls/active)."},
            }
        ),
        "Overview": _overview(),
        "Costs": _costs(),
        "Health": _health(),
        **_event_schemas(),
        "Batch": obj(
            {"events": {"type": "array", "minItems": 1, "items": ref("Envelope")}},
            description="Validated whole: one bad event refuses the batch and none of it is applied.",
        ),
        "Ack": obj(
            {
                "accepted": {
                    "type": "array",
                    "items": obj({"seq": {"type": "integer"}, "duplicate": {"type": "boolean"}}),
                    "description": "One per event, in order; seq is the event's place in the live stream.",
                },
                "seq": {"type": "integer", "description": "Single-event bodies only."},
                "duplicate": {"type": "boolean", "description": "Single-event bodies only."},
            },
            required=("accepted",),
        ),
        "PatterCall": {
            "description": (
                "The call dict Patter 0.7.0's notify_dashboard POSTs, classified Patter's way: status 'initiated' → "
                "outbound call initiated; else ended_at present → call end (with metrics); otherwise → call start."
            ),
            "anyOf": [
                {"allOf": [ref("CallInitiatedData"), {"properties": {"status": {"const": "initiated"}}, "required": ["status"]}]},
                {"allOf": [ref("CallEndData"), {"properties": {"ended_at": {"type": "number"}}, "required": ["ended_at"]}]},
                {"allOf": [ref("CallStartData"), {"properties": {"ended_at": {"type": "null"}}}]},
            ],
        },
        "PatterAck": {
            "allOf": [
                ref("Ack"),
                obj({"ok": {"const": True}, "call_id": {"type": "string"}, "event": {"enum": ["initiated", "started", "ended"]}}),
            ]
        },
    }


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
        "full": param("full", "query", {"enum": ["0", "1", "true", "false"]}, "1 or true: items are CallDetail."),
        "status": param("status", "query", {"type": "string", "maxLength": 32}, "Exact status, e.g. completed."),
        "direction": param("direction", "query", {"enum": ["inbound", "outbound"]}, "Call direction."),
        "from": param("from", "query", when, f"Calls started at or after this time. {zone}"),
        "to": param("to", "query", when, f"Calls started before this time (not before from). {zone}"),
        "q": param(
            "q", "query", {"type": "string", "maxLength": 256},
            "Case-insensitive substring of caller, callee, call id or transcript text.",
        ),
        "provider_mode": param("provider_mode", "query", {"type": "string", "maxLength": 32}, "e.g. pipeline."),
        "bucket": param("bucket", "query", {"enum": ["hour", "day"]}, "Series bucket; default hour for spans up to two days, else day."),
        "format": param("format", "query", {"enum": ["json", "ndjson"]}, "json (one array) or ndjson (one call a line)."),
        "call_id": param("call_id", "path", {"type": "string", "minLength": 1}, "The call's id (Twilio CallSid etc.).", required=True),
        "types": param(
            "types", "query", {"type": "string"},
            f"Comma-separated event types to receive: {', '.join(EVENT_TYPES)}.",
        ),
        "stream_call_id": param("call_id", "query", {"type": "string", "maxLength": 256}, "Only this call's events."),
        "last_event_id": param(
            "last_event_id", "query", {"type": "integer", "minimum": 0},
            "Resume after this event (as the Last-Event-ID header does).",
        ),
        "Last-Event-ID": param("Last-Event-ID", "header", {"type": "string"}, "Resume after this event id (EventSource sends it)."),
    }


# ------------------------------------------------------------------ paths

FILTERS = ("status", "direction", "from", "to", "q", "provider_mode")


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


def _data(schema: Schema, **extra: Schema) -> Schema:
    return obj({"data": schema, **extra})


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
    history = ("limit", "offset", "full", *FILTERS)
    stream = ("types", "stream_call_id", "last_event_id", "Last-Event-ID")
    routes: dict[str, Schema] = {
        f"{V1}/calls": _get(
            "listCalls", "calls",
            json_body(
                _data({"type": "array", "items": {"anyOf": [ref("CallSummary"), ref("CallDetail")]}}, pagination=ref("Pagination")),
                "Completed calls matching the filters, newest first. CallDetail items with full=1.",
            ),
            history,
        ),
        f"{V1}/calls/active": _get(
            "listActiveCalls", "calls",
            json_body(
                obj(
                    {
                        "data": {"type": "array", "items": ref("ActiveCall")},
                        "count": {"type": "integer", "description": "Items in this page (as pagination.count)."},
                        "pagination": ref("Pagination"),
                    }
                ),
                "Live calls, newest first (by when the dashboard first saw each), one page.",
            ),
            ("limit", "offset"),
        ),
        f"{V1}/calls/{{call_id}}": _get(
            "getCall", "calls", json_body(_data(ref("CallDetail")), "The call, live or completed."), ("call_id",),
            errors={"404": error('No such call: {"error": "Call not found"}.')},
        ),
        f"{V1}/analytics/overview": _get(
            "getOverview", "analytics", json_body(_data(ref("Overview")), "Totals for the period."), ("from", "to")
        ),
        f"{V1}/analytics/costs": _get(
            "getCosts", "analytics", json_body(_data(ref("Costs")), "Cost totals and series."), ("from", "to", "bucket")
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
            FILTERS,
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
            ("format", *FILTERS),
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
                    "event (seq, type, call_id, call summary, plus line or turn). Heartbeat comments keep it open; "
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
        "tags": [{"name": t} for t in ("calls", "analytics", "export", "live", "ingest", "meta", "ui")],
        "paths": routes,
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": COOKIE},
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
