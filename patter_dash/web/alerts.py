"""Alerts route: ``GET /api/v1/alerts``, each rule with its state and last notifications.

The rules and their states live in :mod:`patter_dash.ops.alerts`; this only
reads them. Without a ``PATTER_DASH_ALERTS`` file the answer says so
(``enabled: false``) rather than 404, so the page can show how to turn it on.
"""

from __future__ import annotations

from flask import Blueprint, Response

from ..model import jsoncodec
from .context import current_dashboard

bp = Blueprint("alerts", __name__)

_DISABLED = {"enabled": False, "firing": 0, "evaluated_at": None, "decided_here": True, "rules": [], "destinations": []}


@bp.get("/alerts")
def alerts() -> Response:
    engine = current_dashboard().alerts
    state = engine.view() if engine is not None else _DISABLED
    return Response(jsoncodec.dumps({"data": state}), mimetype="application/json")
