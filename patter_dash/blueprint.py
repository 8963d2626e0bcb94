"""Blueprint: assembles the route modules under one ``patter_dash`` blueprint.

Layout under the configured prefix: ``/dashboard`` (UI), ``/api/v1/...``
(read API, ingest, events, export, OpenAPI), ``/api/dashboard/ingest``
(Patter's own push). Cross-cutting rules live here once: start the event
thread in the serving process, authenticate, add security headers, and turn
every error under the API into JSON (never a stack trace or an HTML page).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from . import api, auth, export, ingest, openapi, streaming
from .config import Settings
from .events import ValidationError
from .extension import current_dashboard
from .hub import HubFull
from .params import BadParam
from .pipeline import QueueFull

log = logging.getLogger("patter_dash")
API_PREFIX = "/api/v1"


def build_blueprint(settings: Settings) -> Blueprint:
    parent = Blueprint("patter_dash", __name__)
    parent.register_blueprint(api.bp, url_prefix=API_PREFIX)
    parent.register_blueprint(streaming.bp, url_prefix=API_PREFIX)
    parent.register_blueprint(export.bp, url_prefix=f"{API_PREFIX}/export")
    parent.register_blueprint(openapi.bp, url_prefix=API_PREFIX)
    parent.register_blueprint(ingest.bp)
    if settings.UI:
        from . import ui

        parent.register_blueprint(ui.bp)

    @parent.before_request
    def _guard() -> Response | None:
        dash = current_dashboard()
        dash.pipeline.ensure_started()
        return auth.check(dash.settings)

    @parent.after_request
    def _headers(response: Response) -> Response:
        return auth.security_headers(response, current_dashboard().settings)

    parent.add_url_rule(
        f"{API_PREFIX}/<path:rest>",
        "api_fallback",
        _api_fallback,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    )
    parent.register_error_handler(BadParam, lambda e: _json_error(400, str(e)))
    parent.register_error_handler(ValidationError, _validation_error)
    parent.register_error_handler(QueueFull, _queue_full)
    parent.register_error_handler(HubFull, lambda e: _json_error(503, str(e)))
    parent.register_error_handler(HTTPException, _http_error)
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


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    response, status = _json_error(exc.code or 500, exc.description or exc.name)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response, status


def _unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("patter-dash: unexpected error on %s %s", request.method, request.path)
    return _json_error(500, "internal error")


def _api_fallback(rest: str) -> tuple[Response, int]:
    """Unknown paths and wrong methods under the API prefix answer JSON, not HTML."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in ("GET", "POST"):
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except (NotFound, MethodNotAllowed):
            continue
        if not endpoint.endswith(".api_fallback"):
            allowed.add(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=sorted(allowed))
    raise NotFound(f"no API route {request.path}")
