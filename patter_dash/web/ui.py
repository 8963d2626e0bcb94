"""Browser UI of patter-dash: the dashboard page, the login page and static assets.

This module owns:

* the ``ui`` blueprint, which serves ``/dashboard`` (and ``/dashboard/``) and the
  static files under ``/dashboard/static/`` (JS modules, CSS, the vendored chart
  library);
* the Jinja templates ``patter_dash/dashboard.html`` and ``patter_dash/login.html``
  (kept in the top-level ``templates/`` directory of the source tree, shipped as
  package data inside ``patter_dash/templates/`` in the wheel).

It does not own authentication, security headers or the Content-Security-Policy
(see ``auth.py``); it only marks the dashboard view as a ``page`` so that a
``?token=`` is swapped for a session cookie and a missing token shows the
sign-in page. The blueprint is nested inside the parent ``patter_dash``
blueprint, so its endpoints are ``patter_dash.ui.dashboard`` and
``patter_dash.ui.static`` and every URL the page uses is built with ``url_for``:
the dashboard works under any URL prefix.

The page has no inline scripts or styles; URLs reach the JavaScript through
``data-*`` attributes on the ``#patter-dash`` root element.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..model.views import STREAM_TYPES
from . import auth
from .context import current_dashboard

__all__ = ["bp", "TEMPLATE_DIR", "dashboard", "logout"]


PACKAGE = Path(__file__).resolve().parent.parent


def _template_dir() -> Path:
    """Directory holding the ``patter_dash/*.html`` templates.

    Installed from a wheel, the templates sit inside the package
    (``patter_dash/templates``); in a source checkout they live in the top-level
    ``templates/`` directory next to the package.
    """
    installed = PACKAGE / "templates"
    if installed.is_dir():
        return installed
    return PACKAGE.parent / "templates"


TEMPLATE_DIR: Path = _template_dir()

bp = Blueprint(
    "ui",
    __name__,
    template_folder=str(TEMPLATE_DIR),
    static_folder=str(PACKAGE / "static"),
    static_url_path="/dashboard/static",
)


@bp.get("/dashboard")
@bp.get("/dashboard/")
@auth.page
def dashboard() -> str:
    """Render the single-page dashboard (live calls, history, analytics)."""
    return render_template(
        "patter_dash/dashboard.html",
        signed_in=current_dashboard().settings.TOKEN is not None,
        event_types=STREAM_TYPES,  # the stream's event names: the page listens for exactly these
    )


@bp.post("/dashboard/logout")
@auth.logout
def logout() -> Response:
    """Sign out: drop the session cookie and go back to the (now sign-in) page.

    Only a cookie this request carried is cleared, and a SameSite=Lax cookie
    rides on same-site requests only: another site's form cannot sign you out.
    (Not an Origin check: with ``Referrer-Policy: no-referrer`` the page's own
    form POST says ``Origin: null``.)
    """
    response = redirect(url_for("patter_dash.ui.dashboard"), code=303)
    if auth.COOKIE in request.cookies:
        auth.clear_session(response, current_dashboard().settings)
    return response
