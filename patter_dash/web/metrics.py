"""Metrics route: ``GET <prefix>/metrics``, this dashboard in the Prometheus exposition format.

What is exported, and why each number is a counter or a gauge, is in
:mod:`patter_dash.ops.metrics`. The route takes the dashboard's token like
the API, or ``PATTER_DASH_METRICS_TOKEN`` as a Bearer header (a scraper's
credential that opens nothing else).
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from . import auth
from .context import current_dashboard

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@auth.metrics
def metrics() -> Response:
    registry = current_dashboard().metrics
    assert registry is not None  # made by init_app, which registered this route
    body, content_type = registry.exposition(request.headers.get("Accept"))
    return Response(body, content_type=content_type)
