"""Auth: the optional token, the browser session cookie, Host checks and headers.

Three kinds of route, marked on the view function:

* ``page``: the dashboard HTML. ``?token=`` is swapped for an HttpOnly,
  SameSite=Lax, path-scoped cookie and a 303 to the same URL without it, so
  the token leaves the address bar, history and access logs.
* ``read`` (default): REST, export, SSE. Bearer header, ``?token=`` or the cookie.
* ``ingest``: Bearer header only (no cookie, so no CSRF). Patter's own
  ``notify_dashboard`` cannot send a token, so its path is accepted from
  loopback clients when ``PATTER_DASH_LOOPBACK_INGEST`` is on.

With no token, everything is open but only for a loopback ``Host`` (or one in
``PATTER_DASH_ALLOWED_HOSTS``), which defeats DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Response, current_app, jsonify, redirect, render_template, request

from .config import Settings

F = TypeVar("F", bound=Callable[..., Any])
COOKIE = "patter_dash_session"
MAX_TOKEN_BYTES = 4096
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; require-trusted-types-for 'script'; trusted-types 'none'"
)


def kind(name: str) -> Callable[[F], F]:
    """Mark a view as ``page``, ``read`` or ``ingest``."""

    def mark(view: F) -> F:
        view.patter_auth = name  # type: ignore[attr-defined]
        return view

    return mark


page = kind("page")
ingest = kind("ingest")
patter_ingest = kind("patter_ingest")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "replace")).digest()


def token_matches(candidate: str | None, token: str) -> bool:
    """Constant-time on bytes; non-ASCII or oversized input is simply a mismatch."""
    if not candidate or len(candidate) > MAX_TOKEN_BYTES:
        return False
    return hmac.compare_digest(_digest(candidate), _digest(token))


def session_value(token: str) -> str:
    # Derived, not the token itself: a leaked cookie does not reveal the token,
    # and changing the token logs every browser out.
    return hmac.new(token.encode(), b"patter-dash session v1", hashlib.sha256).hexdigest()


def bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def is_loopback_client() -> bool:
    try:
        return ipaddress.ip_address((request.remote_addr or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def host_allowed(settings: Settings) -> bool:
    host = (request.host or "").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name in settings.ALLOWED_HOSTS or host in settings.ALLOWED_HOSTS or "*" in settings.ALLOWED_HOSTS:
        return True
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookie_path(settings: Settings) -> str:
    return settings.URL_PREFIX or "/"


def _unauthorized(view_kind: str) -> Response:
    if view_kind == "page":
        response = Response(render_template("patter_dash/login.html", action=request.path), status=401)
    else:
        response = jsonify(error="authentication required: send 'Authorization: Bearer <token>'")
        response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="patter-dash"'
    return response


def check(settings: Settings) -> Response | None:
    """The blueprint's before_request: None to proceed, or the refusal."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_kind = getattr(view, "patter_auth", "read")
    token = settings.TOKEN
    if is_preflight():
        return None  # browsers send CORS preflights without credentials; the answer holds no data
    if request.endpoint == "patter_dash.ui.static":
        return None  # CSS, JS and images hold no data, and the login page needs them
    if request.headers.get("Upgrade", "").lower() == "websocket" and not origin_allowed(settings):
        response = jsonify(error="WebSocket Origin not allowed")
        response.status_code = 403
        return response
    if token is None:
        if not host_allowed(settings):
            response = jsonify(error="Host not allowed: set PATTER_DASH_ALLOWED_HOSTS or a token")
            response.status_code = 403
            return response
        return None
    if token_matches(bearer(), token):
        return None
    if view_kind == "ingest":
        return _unauthorized(view_kind)
    if view_kind == "patter_ingest":
        return None if settings.LOOPBACK_INGEST and is_loopback_client() else _unauthorized(view_kind)
    query_token = request.args.get("token")
    if query_token is not None and token_matches(query_token, token):
        if view_kind == "page" and request.method in ("GET", "HEAD"):
            return _login_redirect(settings, token)
        return None
    if query_token is not None and view_kind == "page" and request.method in ("GET", "HEAD"):
        # A mistyped token must not stay in the address bar or history either.
        return redirect(_without_token(rejected=True), code=303)
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and hmac.compare_digest(cookie.encode("utf-8", "replace"), session_value(token).encode()):
        return None
    return _unauthorized(view_kind)


def _without_token(rejected: bool = False) -> str:
    """This URL without ``token`` (and with ``token_rejected=1`` after a wrong one)."""
    rest = [(k, v) for k, v in request.args.items(multi=True) if k not in ("token", "token_rejected")]
    if rejected:
        rest.append(("token_rejected", "1"))
    return request.path + ("?" + urlencode(rest) if rest else "")


def _login_redirect(settings: Settings, token: str) -> Response:
    response = redirect(_without_token(), code=303)
    response.set_cookie(
        COOKIE,
        session_value(token),
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
        path=cookie_path(settings),
    )
    return response


def security_headers(response: Response, settings: Settings) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cache-Control", "no-store")
    elif response.mimetype != "text/event-stream" and not request.path.startswith(_static_prefix(settings)):
        headers["Cache-Control"] = "no-store"
    origin = request.headers.get("Origin")
    if origin and origin.lower() in settings.CORS_ORIGINS:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Vary"] = "Origin"
        if is_preflight():
            headers["Access-Control-Allow-Methods"] = headers.get("Allow", "GET, POST")
            headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Last-Event-ID"
            headers["Access-Control-Max-Age"] = "600"
    return response


def is_preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _static_prefix(settings: Settings) -> str:
    return f"{settings.URL_PREFIX}/dashboard/static/"


def origin_allowed(settings: Settings) -> bool:
    """For WebSocket upgrades: a browser's Origin must be this host or a CORS origin."""
    origin = request.headers.get("Origin")
    if not origin:
        return True  # not a browser
    origin = origin.lower()
    if origin in settings.CORS_ORIGINS:
        return True
    return origin.split("://", 1)[-1] == (request.host or "").lower()
