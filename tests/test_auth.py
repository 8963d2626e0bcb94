"""Token auth, the browser session cookie, Host checks (DNS rebinding), security headers and CORS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import post
from flask import Flask
from flask.testing import FlaskClient

from patter_dash import PatterDashboard
from patter_dash.run.app import create_app
from patter_dash.web.auth import COOKIE

TOKEN = "s3cret-Token_42"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
START = {"type": "call_start", "data": {"call_id": "c1"}}

READ_ROUTES = (
    "/api/v1/calls",
    "/api/v1/calls?full=1",
    "/api/v1/calls/active",
    "/api/v1/calls/c1",
    "/api/v1/analytics/overview",
    "/api/v1/analytics/costs",
    "/api/v1/analytics/providers",
    "/api/v1/health",
    "/api/v1/openapi.json",
    "/api/v1/export/csv",
    "/api/v1/export/json",
    "/api/v1/export/json?format=ndjson",
    "/api/v1/events",
)


def make_app(**config: Any) -> Flask:
    return create_app({"TESTING": True, **{f"PATTER_DASH_{k.upper()}": v for k, v in config.items()}})


@pytest.fixture
def secured() -> Iterator[FlaskClient]:
    app = make_app(token=TOKEN)
    client = app.test_client()
    post(client, START["type"], START["data"], headers=BEARER)
    yield client
    app.extensions["patter_dash"].stop()


def get(client: FlaskClient, path: str, **kwargs: Any):
    """GET without reading a streamed body (the SSE route never ends)."""
    response = client.get(path, **kwargs)
    response.close()
    return response


# -------------------------------------------------------------- the token


@pytest.mark.parametrize("path", READ_ROUTES)
@pytest.mark.checklist(33)
def test_every_read_route_needs_the_token(secured: FlaskClient, path: str) -> None:
    refused = get(secured, path)
    assert refused.status_code == 401
    assert refused.mimetype == "application/json"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert get(secured, path, headers=BEARER).status_code == 200
    separator = "&" if "?" in path else "?"
    assert get(secured, f"{path}{separator}token={TOKEN}").status_code == 200


@pytest.mark.checklist(33)
def test_the_dashboard_page_shows_sign_in_without_the_token(secured: FlaskClient) -> None:
    for path in ("/dashboard", "/dashboard/"):
        response = secured.get(path)
        assert response.status_code == 401
        assert response.mimetype == "text/html"
        assert 'name="token"' in response.get_data(as_text=True)
        assert TOKEN not in response.get_data(as_text=True)
    assert secured.get("/dashboard", headers=BEARER).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": "Bearer \xe9"},  # Latin-1 on the wire
        {"Authorization": "Bearer " + "A" * 10_240},
        {"Cookie": f"{COOKIE}=forged"},
        {"Cookie": f"{COOKIE}=" + "\xe9" * 50},
        {"Cookie": f"{COOKIE}={TOKEN}"},  # the token itself is not the session value
    ],
    ids=lambda h: repr(h)[:60],
)
@pytest.mark.checklist(34)
def test_wrong_credentials_are_401_never_500(secured: FlaskClient, headers: dict[str, str]) -> None:
    for path in ("/api/v1/calls", "/api/v1/export/csv", "/dashboard"):
        assert get(secured, path, headers=headers).status_code == 401, path


@pytest.mark.parametrize("query", ["token=", "token=wrong", "token=%C3%A9", "token=%FF%FE", "token=" + "a" * 10_240, f"token={TOKEN}%00"])
@pytest.mark.checklist(34)
def test_wrong_query_tokens_are_401(secured: FlaskClient, query: str) -> None:
    assert get(secured, f"/api/v1/calls?{query}").status_code == 401
    # the page drops a wrong token from the URL too, then asks again
    refused = get(secured, f"/dashboard?view=history&{query}")
    assert refused.status_code == 303 and refused.headers["Location"] == "/dashboard?view=history&token_rejected=1"
    again = get(secured, refused.headers["Location"])
    assert again.status_code == 401 and b"not accepted" in again.data


# --------------------------------------------------------------- ingest


@pytest.mark.checklist(36)
def test_ingest_takes_the_bearer_header_only(secured: FlaskClient) -> None:
    assert secured.post("/api/v1/ingest", json=START).status_code == 401
    assert secured.post(f"/api/v1/ingest?token={TOKEN}", json=START).status_code == 401
    login = secured.get(f"/dashboard?token={TOKEN}")
    assert login.status_code == 303  # the browser now holds the session cookie...
    response = secured.post("/api/v1/ingest", json={"type": "call_start", "data": {"call_id": "csrf"}})
    assert response.status_code == 401  # ...which does not let a page POST events (no CSRF)
    assert secured.get("/api/v1/calls/csrf", headers=BEARER).status_code == 404
    assert secured.post("/api/v1/ingest", json=START, headers=BEARER).status_code in (200, 202)


def test_patter_push_accepts_loopback_without_a_token(secured: FlaskClient) -> None:
    body = {"call_id": "pushed"}
    assert secured.post("/api/dashboard/ingest", json=body).status_code == 202  # from 127.0.0.1
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert secured.post("/api/dashboard/ingest", json=body, environ_base=remote).status_code == 401
    assert secured.post("/api/dashboard/ingest", json=body, environ_base=remote, headers=BEARER).status_code in (200, 202)
    assert secured.post("/api/dashboard/ingest", json=body, environ_base={"REMOTE_ADDR": "::1"}).status_code in (200, 202)


def test_patter_push_from_loopback_can_be_switched_off() -> None:
    app = make_app(token=TOKEN, loopback_ingest="0")
    client = app.test_client()
    try:
        assert client.post("/api/dashboard/ingest", json={"call_id": "x"}).status_code == 401
        assert client.post("/api/dashboard/ingest", json={"call_id": "x"}, headers=BEARER).status_code == 202
    finally:
        app.extensions["patter_dash"].stop()


# ------------------------------------------------------ the session cookie


@pytest.mark.checklist(35)
def test_token_in_the_url_becomes_a_cookie_and_leaves_the_address_bar(secured: FlaskClient) -> None:
    response = secured.get(f"/dashboard?view=history&token={TOKEN}&q=refund")
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard?view=history&q=refund"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and TOKEN not in cookie
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].strip() == "SameSite=Lax"
    assert attributes["path"].strip() == "Path=/"
    assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back
    # The browser follows the redirect with the cookie, and the cookie opens the API too.
    assert secured.get("/dashboard?view=history&q=refund").status_code == 200
    assert secured.get("/api/v1/calls").status_code == 200
    assert secured.get("/api/v1/export/csv").status_code == 200


def test_the_redirect_keeps_repeated_parameters(secured: FlaskClient) -> None:
    response = secured.get(f"/dashboard/?status=a&status=b&token={TOKEN}")
    assert response.headers["Location"] == "/dashboard/?status=a&status=b"


@pytest.mark.checklist(35)
def test_cookie_is_secure_over_https() -> None:
    app = make_app(token=TOKEN)
    client = app.test_client()
    try:
        response = client.get(f"/dashboard?token={TOKEN}", base_url="https://localhost")
        assert response.status_code == 303
        assert "; Secure" in response.headers["Set-Cookie"]
    finally:
        app.extensions["patter_dash"].stop()


@pytest.mark.checklist(35)
def test_cookie_path_is_the_url_prefix() -> None:
    host = Flask("host")
    dash = PatterDashboard(host, token=TOKEN, url_prefix="/ops/voice")
    client = host.test_client()
    try:
        response = client.get(f"/ops/voice/dashboard?token={TOKEN}")
        assert response.status_code == 303
        assert response.headers["Location"] == "/ops/voice/dashboard"
        assert "Path=/ops/voice" in response.headers["Set-Cookie"]
        assert client.get("/ops/voice/api/v1/calls").status_code == 200
    finally:
        dash.stop()


def test_changing_the_token_logs_browsers_out() -> None:
    old, new = make_app(token=TOKEN), make_app(token=TOKEN + "-rotated")
    try:
        login = old.test_client().get(f"/dashboard?token={TOKEN}")
        session = login.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        client = new.test_client()
        client.set_cookie(COOKIE, session)
        assert client.get("/api/v1/calls").status_code == 401
    finally:
        old.extensions["patter_dash"].stop()
        new.extensions["patter_dash"].stop()


# ------------------------------------------------------ no token: Host check


def test_without_a_token_everything_is_open_to_loopback_hosts(client: FlaskClient) -> None:
    for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "127.0.0.2"):
        assert get(client, "/api/v1/calls", headers={"Host": host}).status_code == 200, host
    post(client, START["type"], START["data"])
    assert client.get("/dashboard").status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io", "10.0.0.5"])
@pytest.mark.checklist(37)
def test_without_a_token_other_hosts_are_refused(client: FlaskClient, host: str) -> None:
    for path in ("/api/v1/calls", "/api/v1/export/csv", "/dashboard"):
        assert get(client, path, headers={"Host": host}).status_code == 403, path
    assert client.post("/api/v1/ingest", json=START, headers={"Host": host}).status_code == 403


def test_allowed_hosts_lets_one_name_in() -> None:
    app = make_app(allowed_hosts="dash.internal")
    client = app.test_client()
    try:
        assert client.get("/api/v1/calls", headers={"Host": "dash.internal"}).status_code == 200
        assert client.get("/api/v1/calls", headers={"Host": "dash.internal:8000"}).status_code == 200
        assert client.get("/api/v1/calls", headers={"Host": "evil.example"}).status_code == 403
    finally:
        app.extensions["patter_dash"].stop()


# ------------------------------------------------------------------ headers


@pytest.mark.checklist(38)
def test_every_response_has_the_basic_security_headers(secured: FlaskClient) -> None:
    responses = [
        secured.get("/api/v1/calls", headers=BEARER),
        secured.get("/api/v1/calls"),  # 401
        secured.get("/api/v1/nope", headers=BEARER),  # 404
        secured.get("/api/v1/calls?limit=0", headers=BEARER),  # 400
        secured.get("/dashboard", headers=BEARER),
        secured.get("/dashboard"),  # sign-in page
        secured.get("/dashboard/static/css/dashboard.css", headers=BEARER),
        secured.get(f"/dashboard?token={TOKEN}"),  # 303
        secured.post("/api/v1/ingest", json=START, headers=BEARER),
        get(secured, "/api/v1/export/csv", headers=BEARER),
    ]
    for response in responses:
        assert response.headers["X-Content-Type-Options"] == "nosniff", response
        assert response.headers["Referrer-Policy"] == "no-referrer", response


@pytest.mark.checklist(38)
def test_api_and_exports_are_not_cached(secured: FlaskClient) -> None:
    for path in ("/api/v1/calls", "/api/v1/calls/c1", "/api/v1/nope", "/api/v1/export/csv", "/api/v1/export/json", "/api/v1/health"):
        assert get(secured, path, headers=BEARER).headers["Cache-Control"] == "no-store", path
    assert get(secured, "/api/v1/calls").headers["Cache-Control"] == "no-store"  # the 401 too


@pytest.mark.checklist(38)
def test_html_has_the_content_security_policy(secured: FlaskClient) -> None:
    for response in (secured.get("/dashboard", headers=BEARER), secured.get("/dashboard")):
        csp = response.headers["Content-Security-Policy"]
        directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";")}
        assert directives["require-trusted-types-for"] == "require-trusted-types-for 'script'"
        assert directives["frame-ancestors"] == "frame-ancestors 'none'"
        assert directives["script-src"] == "script-src 'self'"
        assert "unsafe-inline" not in csp


@pytest.mark.checklist(36)
def test_no_cors_headers_unless_the_origin_is_listed(secured: FlaskClient) -> None:
    response = secured.get("/api/v1/calls", headers={**BEARER, "Origin": "https://evil.example"})
    assert response.status_code == 200
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]
    preflight = secured.options("/api/v1/calls", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert not [h for h in preflight.headers.keys() if h.lower().startswith("access-control-")]


def test_a_listed_origin_gets_cors_headers_and_preflights_pass() -> None:
    app = make_app(token=TOKEN, cors_origins="https://ops.example.com, https://other.example")
    client = app.test_client()
    origin = {"Origin": "https://ops.example.com"}
    try:
        response = client.get("/api/v1/calls", headers={**BEARER, **origin})
        assert response.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
        assert "Origin" in response.headers["Vary"]
        # Browsers preflight a request carrying Authorization, without credentials.
        preflight = client.options(
            "/api/v1/calls",
            headers={**origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
        assert "POST" not in preflight.headers["Access-Control-Allow-Methods"]
        # A plain OPTIONS (not a preflight) is still an unauthenticated request.
        assert client.options("/api/v1/calls").status_code == 401
        # The preflight is no way around the token.
        assert client.get("/api/v1/calls", headers=origin).status_code == 401
    finally:
        app.extensions["patter_dash"].stop()
