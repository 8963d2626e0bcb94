"""Auth: the optional token, the browser session cookie, Host checks and headers.

Kinds of route, marked on the view function:

* ``page``: the dashboard HTML. ``?token=`` is swapped for an HttpOnly,
  SameSite=Lax, path-scoped cookie and a 303 to the same URL without it, so
  the token leaves the address bar, history and access logs.
* ``read`` (default): REST, export, SSE. Bearer header, ``?token=`` or the cookie.
* ``ingest``: Bearer header only (no cookie, so no CSRF). Patter's own
  ``notify_dashboard`` cannot send a token, so its path is accepted from
  local clients when ``PATTER_DASH_LOOPBACK_INGEST`` is on.
* ``metrics``: ``GET /metrics``. As ``read``, and also a Bearer header with
  ``PATTER_DASH_METRICS_TOKEN``, which a Prometheus scraper can hold without
  holding the token that reads transcripts.
* ``logout``: clears the session cookie the request carried; needs no token
  (a stale cookie must be clearable). Only a same-site request carries the
  SameSite=Lax cookie, so no other site can sign you out.
* ``write`` (deleting calls): the Bearer header or the session cookie (the
  dashboard page deletes with its cookie), never ``?token=``. A browser's
  ``Origin`` must be this server or a CORS origin, whatever the mode: no
  other site can make a signed-in (or a local, tokenless) browser delete.
  Browsers also refuse to send it: a cross-site request carries no Lax
  cookie, and a cross-origin DELETE needs a preflight this server never
  grants with credentials.

Which token applies, if any, is decided once at start (:mod:`.access`). Where
no token applies, everything is open but only for a loopback ``Host`` (or one in
``PATTER_DASH_ALLOWED_HOSTS``), which defeats DNS rebinding.

"Local" means a loopback peer address *and* no proxy header: behind a reverse
proxy every peer is loopback, so a request a proxy forwarded (it carries
``Forwarded``, ``X-Forwarded-*``, ``X-Real-IP``, ``Via``, ...) never counts as
local, neither for the ingest exemption nor for the loopback-``Host`` rule.

The session cookie is ``<issued_at>.<hmac>``: signed with a key derived from
the token, refused past ``PATTER_DASH_SESSION_MAX_AGE`` even if a browser (or
someone who copied it) still sends it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from flask import Response, current_app, jsonify, redirect, render_template, request

from ..config import Settings
from .access import Access

F = TypeVar("F", bound=Callable[..., Any])
COOKIE = "patter_dash_session"
MAX_TOKEN_BYTES = 4096
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
#: Headers a reverse proxy adds (any ``X-Forwarded-*`` counts too). A request
#: carrying one came through a proxy, whatever its peer address says.
PROXY_HEADERS = frozenset(
    {
        "forwarded", "via", "x-real-ip", "x-client-ip", "true-client-ip", "x-cluster-client-ip",
        "cf-connecting-ip", "fastly-client-ip", "x-original-forwarded-for",
    }
)
DEFAULT_PORTS = {"http": 80, "https": 443}
#: A session issued this far in the future is refused (clock steps, not forgery: forgery fails the HMAC).
SESSION_CLOCK_SLACK = 60

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
metrics = kind("metrics")
logout = kind("logout")
write = kind("write")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "replace")).digest()


def token_matches(candidate: str | None, token: str) -> bool:
    """Constant-time on bytes; non-ASCII or oversized input is simply a mismatch."""
    if not candidate or len(candidate) > MAX_TOKEN_BYTES:
        return False
    return hmac.compare_digest(_digest(candidate), _digest(token))


def session_value(token: str, issued_at: int) -> str:
    """``<issued_at>.<hmac>``; the key is derived from the token, not the token itself.

    A leaked cookie does not reveal the token, changing the token logs every
    browser out, and the signed issue time lets the server expire a copy.
    """
    key = hmac.new(token.encode(), b"patter-dash session v2", hashlib.sha256).digest()
    mac = hmac.new(key, str(issued_at).encode(), hashlib.sha256).hexdigest()
    return f"{issued_at}.{mac}"


def session_valid(cookie: str, token: str, max_age: int, now: float | None = None) -> bool:
    issued, _, _ = cookie.partition(".")
    if not issued.isascii() or not issued.isdigit() or len(issued) > 12:
        return False
    issued_at = int(issued)
    now = time.time() if now is None else now
    if not now - max_age <= issued_at <= now + SESSION_CLOCK_SLACK:
        return False
    return hmac.compare_digest(cookie.encode("utf-8", "replace"), session_value(token, issued_at).encode())


def bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def proxied() -> bool:
    """Whether a proxy forwarded this request (it added one of its headers)."""
    return any(name.lower() in PROXY_HEADERS or name.lower().startswith("x-forwarded-") for name in request.headers.keys())


def is_local_client() -> bool:
    """A loopback peer that no proxy forwarded: a process on this machine."""
    if proxied():
        return False
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
    if proxied():
        # A proxy passes on whatever Host the remote client sent: a loopback
        # name proves nothing about where that client is.
        return False
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


def check(settings: Settings, access: Access) -> Response | None:
    """The blueprint's before_request: None to proceed, or the refusal (see :mod:`.access` for the modes)."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_kind = getattr(view, "patter_auth", "read")
    token = access.token
    if is_preflight():
        return None  # browsers send CORS preflights without credentials; the answer holds no data
    if request.endpoint == "patter_dash.ui.static":
        return None  # CSS, JS and images hold no data, and the login page needs them
    if request.headers.get("Upgrade", "").lower() == "websocket" and not origin_allowed(settings):
        response = jsonify(error="WebSocket Origin not allowed")
        response.status_code = 403
        return response
    if view_kind == "write" and not origin_allowed(settings):
        # Checked before any mode: a tokenless local dashboard is open to this
        # machine's browser, and so to every page that browser shows.
        response = jsonify(error="cross-origin request refused: Origin is neither this server nor in PATTER_DASH_CORS_ORIGINS")
        response.status_code = 403
        return response
    if access.mode == "insecure":
        return None
    if view_kind == "metrics" and settings.METRICS_TOKEN is not None and token_matches(bearer(), settings.METRICS_TOKEN):
        return None  # a credential in itself: it opens /metrics from anywhere, whatever the other rules
    if token is None:
        return None if host_allowed(settings) else _host_refused()
    if access.mode == "auto-token" and is_local_client() and host_allowed(settings):
        return None  # local development stays open; other machines and proxies need the generated token
    if view_kind == "logout":
        return None  # needs no credentials: it only ever clears the cookie the request itself carried
    if token_matches(bearer(), token):
        return None
    if view_kind == "ingest":
        return _unauthorized(view_kind)
    if view_kind == "patter_ingest":
        return None if settings.LOOPBACK_INGEST and is_local_client() else _unauthorized(view_kind)
    query_token = request.args.get("token") if view_kind != "write" else None
    if query_token is not None and token_matches(query_token, token):
        if view_kind == "page" and request.method in ("GET", "HEAD"):
            return _login_redirect(settings, token)
        return None
    if query_token is not None and view_kind == "page" and request.method in ("GET", "HEAD"):
        # A mistyped token must not stay in the address bar or history either.
        return redirect(_without_token(rejected=True), code=303)
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and session_valid(cookie, token, settings.SESSION_MAX_AGE):
        return None
    if access.mode == "auto-token" and view_kind != "page" and not host_allowed(settings):
        # No credentials and a Host nobody configured: what DNS rebinding looks like.
        return _host_refused()
    response = _unauthorized(view_kind)
    if cookie is not None:
        clear_session(response, settings)  # expired or from an old token: the browser may drop it
    return response


def _host_refused() -> Response:
    response = jsonify(error="Host not allowed: set PATTER_DASH_ALLOWED_HOSTS or a token")
    response.status_code = 403
    return response


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
        session_value(token, int(time.time())),
        max_age=settings.SESSION_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
        path=cookie_path(settings),
    )
    return response


def clear_session(response: Response, settings: Settings) -> Response:
    """Tell the browser to drop the session cookie (same attributes, so it matches)."""
    response.delete_cookie(COOKIE, path=cookie_path(settings), secure=request.is_secure, httponly=True, samesite="Lax")
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


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, the default port filled in; None if it is not one."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def origin_allowed(settings: Settings) -> bool:
    """A browser's Origin must be this server (scheme, host and port) or a CORS origin.

    Used for WebSocket upgrades (browsers do not apply CORS to them) and for
    writes (see ``write`` above).
    """
    origin = request.headers.get("Origin")
    if not origin:
        return True  # not a browser (browsers send "null", never an empty Origin)
    if origin.lower() in settings.CORS_ORIGINS:
        return True
    key = _origin_key(origin)
    if key is None:
        return False  # "null" (sandboxed or file pages) and anything malformed
    if any(_origin_key(listed) == key for listed in settings.CORS_ORIGINS):
        return True
    # request.is_secure is the scheme this server was reached by (gunicorn takes
    # X-Forwarded-Proto from its forwarded_allow_ips only).
    own = _origin_key(f"{'https' if request.is_secure else 'http'}://{request.host}")
    return own is not None and key == own
