"""OpenAPI: the machine-readable reference for every route (served at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

bp = Blueprint("openapi", __name__)


def document(server_url: str) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "patter-dash", "version": "0.1.0"}, "servers": [{"url": server_url}], "paths": {}}


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document(request.script_root + request.path.rsplit("/api/v1/", 1)[0]))
