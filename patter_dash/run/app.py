"""App: the standalone Flask application served by ``wsgi.py`` and ``patter-dash serve``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, redirect, request, url_for
from flask.json.provider import DefaultJSONProvider
from werkzeug.wrappers import Response

from ..model import jsoncodec
from ..web import auth
from ..web.extension import PatterDashboard


class JSONProvider(DefaultJSONProvider):
    """Flask's ``jsonify`` through the one JSON codec (the blueprint leaves a host app's own alone)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return jsoncodec.dumps(obj)


def create_app(config: dict[str, Any] | None = None, **options: Any) -> Flask:
    """A Flask app with only the dashboard; ``config`` goes into ``app.config``."""
    # No app-level /static route: the blueprint serves its own files behind auth rules.
    app = Flask("patter_dash", static_folder=None)
    app.json = JSONProvider(app)
    app.config.update(config or {})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dash = PatterDashboard(app, **options)
    if dash.settings.UI:
        prefix = dash.settings.URL_PREFIX

        @app.get(prefix + "/" if prefix else "/")
        def _root() -> Response:
            return redirect(url_for("patter_dash.ui.dashboard"))

    @app.after_request
    def _headers(response: Response) -> Response:
        # The blueprint adds these to its own routes; this covers the app's (redirect, 404s).
        if request.blueprint is None:
            auth.security_headers(response, dash.settings)
        return response

    if dash.settings.DEMO:
        from .demo import DemoRuntime

        demo = DemoRuntime(dash.feed)
        dash.pipeline.on_start.append(demo.start)
    return app
