"""patter-dash: a live call-monitoring dashboard for Patter voice agents.

Embed it in a Flask app::

    from patter_dash import PatterDashboard
    dash = PatterDashboard(app, token="secret")         # or dash.init_app(app)
    phone.serve(agent, port=8001, **dash.patter_callbacks())

or run it standalone: ``patter-dash serve`` (gunicorn + gevent).
"""

from .run.app import create_app
from .web.extension import PatterDashboard

__all__ = ["PatterDashboard", "create_app", "serve", "__version__"]
__version__ = "0.1.0"


def serve(*args, **kwargs):  # noqa: ANN002, ANN003 - re-exported lazily to keep gunicorn out of imports
    from .run.server import serve as _serve

    return _serve(*args, **kwargs)
