"""OpenAPI: the machine-readable reference for every route (served at /api/v1/openapi.json).

:func:`document` builds an OpenAPI 3.1 document as a plain dict: the read API,
exports, both ingest routes, the SSE stream and the two WebSocket routes (which
OpenAPI cannot model; they appear as ``GET`` with a ``101`` response and the
protocol in the description). Paths are relative to the server URL, which is
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
from ..model import events, views
from ..model.clean import MAX_TEXT_LENGTH
from ..model.events import EVENT_MODELS, EVENT_TYPES
from .auth import COOKIE
from .context import API_PREFIX, current_dashboard

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
    views.Health,
    views.Ack,
    views.PatterAck,
    views.Error,
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
                {"anyOf": [ref("CallList"), ref("FullCallList")]},
                "Completed calls matching the filters, newest first (by completion), over all stored history: memory "
                "and, with PATTER_DASH_DB, the calls older than memory holds. CallDetail items with full=1.",
            ),
            history,
        ),
        f"{V1}/calls/active": _get(
            "listActiveCalls", "calls",
            json_body(ref("ActiveCallList"), "Live calls, newest first (by when the dashboard first saw each), one page."),
            ("limit", "offset"),
        ),
        f"{V1}/calls/{{call_id}}": _get(
            "getCall", "calls", json_body(ref("CallAnswer"), "The call, live or completed (from the history file when memory no longer holds it)."), ("call_id",),
            errors={"404": error('No such call: {"error": "Call not found"}.')},
        ),
        f"{V1}/analytics/overview": _get(
            "getOverview", "analytics", json_body(ref("OverviewAnswer"), "Totals for the period."), ("from", "to")
        ),
        f"{V1}/analytics/costs": _get(
            "getCosts", "analytics", json_body(ref("CostsAnswer"), "Cost totals and series."), ("from", "to", "bucket")
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
                    "event (seq, type, call_id, call; lifecycle events and a call's first frame carry the whole summary, "
                    "transcript frames 'line' and the card fields a line can change, turn frames 'turn', 'cost_so_far' "
                    "and 'lines', the transcript lines the turn added). Heartbeat comments keep it open; "
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
