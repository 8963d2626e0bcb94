"""Blueprint: assembles the route modules under one ``patter_dash`` blueprint.

Layout under the configured prefix: ``/dashboard`` (UI), ``/api/v1/...``
(read API, ingest, events, export, OpenAPI), ``/api/dashboard/ingest``
(Patter's own push), ``/metrics`` (Prometheus) and Patter's own dashboard routes
(``/api/dashboard/...``, a compatibility surface). Cross-cutting rules live
here once: start the event thread in the serving process, authenticate, add
security headers, and turn every error under the API into JSON (never a stack
trace or an HTML page).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    default_exceptions,
)
from werkzeug.routing import PathConverter

from ..config import Settings
from ..core.hub import HubFull
from ..core.pipeline import ApplyFailed, QueueFull
from ..journal import JournalUnavailable
from ..model.clean import ValidationError
from . import alerts, api, auth, export, ingest, metrics, openapi, patter_routes, recordings, streaming
from .context import API_PREFIX, current_dashboard
from .params import BadParam

log = logging.getLogger("patter_dash")
#: Methods the API answers in JSON whatever the path (405, or 404). Routing refuses any other method
#: before a blueprint is chosen (the host app's page): those that scanners and WebDAV clients send are here.
FALLBACK_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
                    "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT", "PURGE"]


class AnyPathConverter(PathConverter):
    """``path``, newlines included: a call id is any string, and ``.`` stops at ``\\n``."""

    regex = "[^/](?s:.*?)"


def build_blueprint(settings: Settings) -> Blueprint:
    parent = Blueprint("patter_dash", __name__)
    # Recorded before any rule below (and before the nested blueprints' rules) is added.
    parent.record_once(lambda state: state.app.url_map.converters.setdefault("anypath", AnyPathConverter))
    parent.register_blueprint(api.bp, url_prefix=API_PREFIX)
    parent.register_blueprint(recordings.bp, url_prefix=API_PREFIX)
    parent.register_blueprint(alerts.bp, url_prefix=API_PREFIX)
    parent.register_blueprint(streaming.bp, url_prefix=API_PREFIX)
    parent.register_blueprint(export.bp, url_prefix=f"{API_PREFIX}/export")
    parent.register_blueprint(openapi.bp, url_prefix=API_PREFIX)
    parent.register_blueprint(ingest.bp)
    parent.register_blueprint(metrics.bp)
    parent.register_blueprint(patter_routes.bp)
    if settings.UI:
        from . import ui

        parent.register_blueprint(ui.bp)

    @parent.before_request
    def _guard() -> Response | None:
        # Under gevent a keep-alive connection whose handler never blocks is
        # served again and again before the others; one switch per request keeps
        # tail latency fair (overview p99 306 -> 23 ms in bench/experiments).
        time.sleep(0)
        dash = current_dashboard()
        dash.pipeline.ensure_started()
        refusal = auth.check(dash.settings, dash.access)
        if refusal is None and request.url_rule is not None and request.url_rule.websocket:
            _check_websocket_handshake()
        return refusal

    @parent.after_request
    def _headers(response: Response) -> Response:
        if request.method == "OPTIONS" and "Allow" in response.headers:
            # Flask's automatic OPTIONS lists the catch-all fallback's methods too.
            response.headers["Allow"] = ", ".join(sorted(_allowed_methods(request.path)))
        return auth.security_headers(response, current_dashboard().settings)

    # Unknown paths and wrong methods answer JSON here, not the host app's HTML pages.
    for base in (API_PREFIX, "/api/dashboard"):
        name = "api_fallback" if base == API_PREFIX else "patter_fallback"
        parent.add_url_rule(f"{base}/<anypath:rest>", name, _api_fallback, methods=FALLBACK_METHODS)
        # The bare prefix too (the rule above needs something after the slash).
        for bare in (base, f"{base}/"):
            parent.add_url_rule(bare, f"{name}{len(bare)}_fallback", _api_fallback, methods=FALLBACK_METHODS, strict_slashes=False)
    parent.register_error_handler(BadParam, lambda e: _json_error(400, str(e)))
    parent.register_error_handler(ValidationError, _validation_error)
    parent.register_error_handler(QueueFull, _queue_full)
    parent.register_error_handler(ApplyFailed, lambda e: _json_error(500, f"internal error: {e}"))
    parent.register_error_handler(HubFull, lambda e: _json_error(503, str(e)))
    parent.register_error_handler(JournalUnavailable, _history_unavailable)
    parent.register_error_handler(HTTPException, _http_error)
    for code in default_exceptions:
        # Flask tries a host app's handler for a status code before a blueprint's class handler.
        parent.register_error_handler(code, _http_error)
    parent.register_error_handler(Exception, _unexpected)
    return parent


def _json_error(status: int, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify(error=message, **extra), status


def _validation_error(exc: ValidationError) -> tuple[Response, int]:
    return _json_error(422 if exc.details else 400, exc.message, details=exc.details)


def _queue_full(exc: QueueFull) -> tuple[Response, int]:
    response, status = _json_error(503, f"{exc}; retry shortly")
    response.headers["Retry-After"] = "1"
    return response, status


def _history_unavailable(exc: JournalUnavailable) -> tuple[Response, int]:
    """A read of stored history failed for now (PostgreSQL restarting, say): the client may retry, nothing is wrong with it."""
    response, status = _json_error(503, f"stored history cannot be read now: {exc}; retry shortly")
    response.headers["Retry-After"] = "1"
    return response, status


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    details = getattr(exc, "details", None)  # set by ingest on 413 and 415
    extra = {} if details is None else {"details": details}
    response, status = _json_error(exc.code or 500, exc.description or exc.name, **extra)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    response.headers.update(getattr(exc, "response_headers", {}))
    return response, status


def _unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("patter-dash: unexpected error on %s %s", request.method, request.path)
    return _json_error(500, "internal error")


def _allowed_methods(path: str) -> set[str]:
    """The methods a real route (not a fallback) answers at ``path``."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        try:
            endpoint, _ = adapter.match(path, method=method)
        except HTTPException:
            continue
        if not endpoint.endswith("_fallback"):
            allowed.add(method)
    if "GET" in allowed:
        allowed.add("HEAD")
    if allowed:
        allowed.add("OPTIONS")
    return allowed


def _is_websocket_route(path: str) -> bool:
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        adapter.match(path, method="GET", websocket=True)
    except HTTPException:
        return False
    return True


def _check_websocket_handshake() -> None:
    """Refuse a malformed upgrade with 400 before the WebSocket library sees it (it would raise: 500)."""
    key = request.headers.get("Sec-WebSocket-Key", "").strip()
    version = request.headers.get("Sec-WebSocket-Version", "").strip()
    problem = None
    if version != "13":
        problem = f"Sec-WebSocket-Version must be 13, got {version or 'none'}"
    elif not key:
        problem = "Sec-WebSocket-Key is missing"
    else:
        try:
            nonce = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            nonce = b""
        if len(nonce) != 16:
            problem = "Sec-WebSocket-Key must be 16 bytes in base64"
    if problem is not None:
        exc = BadRequest(f"bad WebSocket handshake: {problem}")
        # RFC 6455 4.4: a refused handshake names the versions the server speaks.
        exc.response_headers = {"Sec-WebSocket-Version": "13"}  # type: ignore[attr-defined]
        raise exc


def _api_fallback(rest: str = "") -> tuple[Response, int]:
    """Unknown paths and wrong methods under the API prefix answer JSON, not HTML."""
    allowed = _allowed_methods(request.path)
    if allowed:
        raise MethodNotAllowed(valid_methods=sorted(allowed))
    if _is_websocket_route(request.path):
        # Werkzeug would say 400 too; without this the catch-all would say 404.
        if request.method == "GET":
            raise BadRequest("this is a WebSocket route: connect with 'Upgrade: websocket'")
        raise MethodNotAllowed(valid_methods=["GET"])
    raise NotFound(f"no API route {request.path}")
