"""App: the standalone Flask application served by ``wsgi.py`` and ``patter-dash serve``."""

from __future__ import annotations

import logging
import os
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


#: Where the standalone server keeps its state when PATTER_DASH_DATA_DIR is not set (relative to its working directory).
DEFAULT_DATA_DIR = "patter-dash-data"
#: The history file inside the data directory (PATTER_DASH_DB sets another path, or :memory:).
DEFAULT_DB_NAME = "history.db"


def create_app(config: dict[str, Any] | None = None, *, standalone: bool = False, **options: Any) -> Flask:
    """A Flask app with only the dashboard; ``config`` goes into ``app.config``.

    ``standalone`` (``wsgi.py``, ``patter-dash serve``) gives it a data
    directory by default (:data:`DEFAULT_DATA_DIR`); an app made for tests or
    embedding writes no files unless told where.
    """
    # No app-level /static route: the blueprint serves its own files behind auth rules.
    app = Flask("patter_dash", static_folder=None)
    app.json = JSONProvider(app)
    app.config.update(config or {})
    if standalone:
        data_dir = app.config.setdefault("PATTER_DASH_DATA_DIR", os.environ.get("PATTER_DASH_DATA_DIR") or DEFAULT_DATA_DIR)
        # The standalone server is the system of record: history persists unless told otherwise.
        app.config.setdefault("PATTER_DASH_DB", os.environ.get("PATTER_DASH_DB") or os.path.join(data_dir, DEFAULT_DB_NAME))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dash = PatterDashboard(app, **options)
    if dash.settings.UI:
        prefix = dash.settings.URL_PREFIX

        @app.get(prefix + "/" if prefix else "/")
        def _root() -> Response:
            # Patter's UI lives at "/": its "/?token=..." links keep working. The
            # dashboard swaps the token for a cookie and drops it from the URL.
            target = url_for("patter_dash.ui.dashboard")
            query = request.query_string.decode("latin-1")
            return redirect(f"{target}?{query}" if query else target, code=303)

    @app.after_request
    def _headers(response: Response) -> Response:
        # The blueprint adds these to its own routes; this covers the app's (redirect, 404s).
        if request.blueprint is None:
            auth.security_headers(response, dash.settings)
        return response

    if dash.settings.PATTER_LOG_DIR:
        from .follow import Follower

        follower = Follower(dash.pipeline, dash.settings.PATTER_LOG_DIR, poll=dash.settings.PATTER_LOG_POLL,
                            retention_days=dash.settings.RETENTION_DAYS)
        dash.follower = follower
        dash.pipeline.on_start.append(follower.start)
    if dash.settings.DEMO:
        from .demo import DemoRuntime

        demo = DemoRuntime(dash.feed)
        dash.pipeline.on_start.append(demo.start)
    return app
