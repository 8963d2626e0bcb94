"""Context: how a route finds the dashboard of the app serving it, and where the API lives.

It imports nothing of the project (the type only under ``TYPE_CHECKING``), so
route modules reach the extension without importing it: no import circle
(extension → blueprint → routes → extension).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from .extension import PatterDashboard

#: Where an app keeps its dashboard: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "patter_dash"
#: Where the API lives under the dashboard's prefix; the one spelling of it.
API_PREFIX = "/api/v1"


def current_dashboard() -> PatterDashboard:
    """The :class:`~patter_dash.web.extension.PatterDashboard` of the app handling this request."""
    return current_app.extensions[EXTENSION_KEY]
