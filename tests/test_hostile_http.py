"""Hostile HTTP (issue 10): proxies and the loopback exemption, slow bodies and headers,
malformed WebSocket handshakes, the WebSocket Origin check, session expiry and sign-out.

Everything runs against real gunicorn + gevent (the live_server fixture) over real sockets;
the nginx case runs Debian's nginx in front of it.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket  # websocket-client

from tests.conftest import payload, post, wait_for
from tests.nginx import nginx
from tests.test_ui_browser import (  # noqa: F401  (fixtures for the sign-out browser test)
    browser,
    open_page,
)

TOKEN = "hostile-http-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PROXY_HEADERS = {
    "Forwarded": "for=203.0.113.9;proto=https",
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "dash.example.com",
    "X-Real-IP": "203.0.113.9",
    "Via": "1.1 proxy.example",
}
WS_ROUTES = ("/api/v1/ws", "/api/v1/ingest/ws")
GOOD_KEY = base64.b64encode(os.urandom(16)).decode()


# ------------------------------------------------------------------ raw HTTP


def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is; read one response (Content-Length framed) or up to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "-1"))
        while status != 101 and (length < 0 or len(body) < length):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def upgrade_request(path: str, host: str, **headers: str) -> bytes:
    fields = {"Host": host, "Upgrade": "websocket", "Connection": "Upgrade", **headers}
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ------------------------------------------- 4. a proxy is not a local client


def test_notify_with_any_proxy_header_needs_the_token(live_server):
    """Patter's tokenless push is accepted from a local client only: any proxy header makes it 401."""
    server = live_server(PATTER_DASH_TOKEN=TOKEN)
    notify = payload("sdk_notify_call_start.json")
    url = f"{server.url}/api/dashboard/ingest"
    for name, value in PROXY_HEADERS.items():
        refused = requests.post(url, json={**notify, "call_id": f"PROXY-{name}"}, headers={name: value}, timeout=5)
        assert refused.status_code == 401, (name, refused.status_code, refused.text)
        assert "error" in refused.json()
        assert server.get(f"/api/v1/calls/PROXY-{name}").status_code == 404
    # Any X-Forwarded-* header counts, and so does an empty one.
    for headers in ({"X-Forwarded-Port": "443"}, {"X-Forwarded-For": ""}, {"x-forwarded-for": "127.0.0.1"}):
        assert requests.post(url, json=notify, headers=headers, timeout=5).status_code == 401, headers
    # With the token, a proxied push is fine; without a proxy header, the local push still needs nothing.
    assert requests.post(url, json={**notify, "call_id": "PROXY-TOKEN"}, headers={**BEARER, **PROXY_HEADERS}, timeout=5).status_code == 202
    direct = requests.post(url, json={**notify, "call_id": "DIRECT"}, timeout=5)
    assert direct.status_code == 202, direct.text
    assert server.get("/api/v1/calls/DIRECT").status_code == 200
    assert server.get("/api/v1/health").json()["auth"] == {"mode": "token", "token": True, "token_file": None, "loopback_ingest": True}


def test_health_shows_whether_the_exemption_is_on(live_server):
    off = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_LOOPBACK_INGEST="false")
    assert off.get("/api/v1/health").json()["auth"]["loopback_ingest"] is False
    assert requests.post(f"{off.url}/api/dashboard/ingest", json={"call_id": "X"}, timeout=5).status_code == 401
    generated = live_server()  # no token: one is generated, so there is no exemption to speak of
    auth = generated.get("/api/v1/health").json()["auth"]
    assert (auth["mode"], auth["token"], auth["loopback_ingest"]) == ("auto-token", True, False)


def test_without_a_token_a_proxied_loopback_host_is_not_local(live_server):
    """Behind a proxy the Host is whatever the remote client sent: a loopback name proves nothing."""
    server = live_server()  # the standalone server: a generated token guards what is not local
    token = (Path(server.config["PATTER_DASH_DATA_DIR"]) / "dashboard-token").read_text().strip()
    for host in ("localhost", "127.0.0.1", f"127.0.0.1:{server.port}", "[::1]"):
        assert server.get("/api/v1/calls", headers={"Host": host}).status_code == 200, host
        for name, value in PROXY_HEADERS.items():
            # Not local, no credentials, and a Host nobody listed: refused as DNS rebinding would be.
            assert server.get("/api/v1/calls", headers={"Host": host, name: value}).status_code == 403, (host, name)
        signed = server.get("/api/v1/calls", headers={"Host": host, **PROXY_HEADERS, "Authorization": f"Bearer {token}"})
        assert signed.status_code == 200, host
    # An app that embeds the blueprint has no data directory, so no token: proxied requests
    # get in only under a listed Host.
    from patter_dash import create_app

    for allowed, host, status in (("", "localhost", 403), ("dash.example.com", "dash.example.com", 200), ("dash.example.com", "localhost", 403)):
        app = create_app({"TESTING": True, "PATTER_DASH_ALLOWED_HOSTS": allowed})
        answer = app.test_client().get("/api/v1/calls", headers={"Host": host, **PROXY_HEADERS})
        assert answer.status_code == status, (allowed, host)
        if status == 403:
            assert "PATTER_DASH_ALLOWED_HOSTS" in answer.get_json()["error"]
        app.extensions["patter_dash"].stop()


def test_behind_nginx_the_tokenless_push_is_refused_and_ws_origin_holds(live_server, tmp_path: Path):
    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_URL_PREFIX="/ops/voice")
    with nginx(tmp_path, server.port) as port:
        proxied = f"http://127.0.0.1:{port}/ops/voice"
        wait_for(lambda: _status(f"{proxied}/api/v1/health", BEARER) == 200, timeout=10, interval=0.1)
        notify = payload("sdk_notify_call_start.json")
        through = requests.post(f"{proxied}/api/dashboard/ingest", json={**notify, "call_id": "VIA-NGINX"}, timeout=5)
        assert through.status_code == 401, through.text
        assert server.get("/api/v1/calls/VIA-NGINX").status_code == 404
        direct = requests.post(f"{server.url}/api/dashboard/ingest", json={**notify, "call_id": "DIRECT"}, timeout=5)
        assert direct.status_code == 202
        ws_url = f"ws://127.0.0.1:{port}/ops/voice/api/v1/ws"
        auth = [f"Authorization: Bearer {TOKEN}"]
        ws = websocket.create_connection(ws_url, timeout=5, header=auth, origin=f"http://127.0.0.1:{port}")
        ws.close()
        for origin in (f"https://127.0.0.1:{port}", f"http://127.0.0.1:{server.port}", "http://evil.example"):
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                websocket.create_connection(ws_url, timeout=5, header=auth, origin=origin)
            assert refused.value.status_code == 403, origin


def _status(url: str, headers: dict[str, str]) -> int | None:
    try:
        return requests.get(url, headers=headers, timeout=1).status_code
    except requests.RequestException:
        return None


# --------------------------------------------------------- 6. slow requests


class SlowClient:
    """Sends its headers, then one body byte every ``interval`` seconds, until answered."""

    def __init__(self, port: int, path: str, interval: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        self.sock.send(head.encode())
        self.opened = time.monotonic()
        self.interval = interval
        self.next_send = self.opened + interval
        self.received = b""
        self.answered_at: float | None = None
        self.closed_at: float | None = None
        self.send_errors = 0

    def on_readable(self, now: float) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            chunk = b""
        if chunk:
            self.received += chunk
            self.answered_at = self.answered_at or now
        else:
            self.closed_at = now

    def tick(self, now: float) -> None:
        if self.answered_at is None and now >= self.next_send:
            self.next_send += self.interval
            try:
                self.sock.send(b" ")
            except OSError:
                self.send_errors += 1

    def response(self) -> tuple[int, dict[str, Any]]:
        head, _, body = self.received.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)


def test_slow_bodies_get_408_and_health_keeps_answering(live_server):
    """150 clients trickling a body (a byte every 0.5 s) against a 100-connection worker.

    Without a body deadline they would hold every connection and health would stop answering.
    """
    timeout, clients, rate = 2.0, 150, 30.0  # 30 new per second: ~60 held at once with a 2 s deadline
    server = live_server(
        PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_BODY_TIMEOUT=str(timeout), PATTER_DASH_WORKER_CONNECTIONS="100"
    )
    latencies: list[float] = []
    done = threading.Event()

    def poll_health() -> None:
        while not done.is_set():
            t0 = time.monotonic()
            try:
                ok = requests.get(f"{server.url}/api/v1/health", headers=BEARER, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            latencies.append(time.monotonic() - t0 if ok else float("inf"))
            time.sleep(0.05)

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    selector = selectors.DefaultSelector()
    slow: list[SlowClient] = []
    start = time.monotonic()
    deadline = start + clients / rate + timeout + 8
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            while len(slow) < clients and now >= start + len(slow) / rate:
                client = SlowClient(server.port, "/api/v1/ingest", 0.5)
                slow.append(client)
                selector.register(client.sock, selectors.EVENT_READ, client)
            for key, _ in selector.select(timeout=0.02):
                client = key.data
                client.on_readable(time.monotonic())
                if client.closed_at is not None:
                    selector.unregister(client.sock)
            now = time.monotonic()
            for client in slow:
                client.tick(now)
            if len(slow) == clients and all(c.closed_at is not None for c in slow):
                break
        time.sleep(0.3)  # health keeps being polled a little after the last slow client
    finally:
        done.set()
        poller.join(10)
        for client in slow:
            client.sock.close()
    worst = max(latencies)
    print(f"{clients} slow clients: health polled {len(latencies)} times, worst {worst * 1000:.0f} ms")
    assert len(latencies) > 50 and worst < 1.0, sorted(latencies)[-5:]
    unanswered = [c for c in slow if c.answered_at is None]
    assert not unanswered, f"{len(unanswered)} slow clients never got an answer"
    for client in slow:
        status, body = client.response()
        assert status == 408 and "PATTER_DASH_BODY_TIMEOUT" in body["error"], (status, body)
        assert timeout - 0.1 <= client.answered_at - client.opened <= timeout + 1.5
        # ...and the connection is closed, not left to the keep-alive timeout.
        assert client.closed_at is not None and client.closed_at - client.answered_at < 1.0
    answered = sorted(c.answered_at - c.opened for c in slow)
    print(f"408 after {answered[0]:.2f}-{answered[-1]:.2f} s")
    # The worker is fine afterwards: a normal body is accepted.
    post(server, "call_start", {"call_id": "AFTER"}, headers=BEARER)


def test_a_body_that_arrives_in_time_is_accepted_even_if_slow(live_server):
    """The deadline is for the whole body, not per byte: a slow but timely sender is served."""
    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_BODY_TIMEOUT="3")
    body = json.dumps({"type": "call_start", "data": {"call_id": "SLOW-OK"}}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for i in range(0, len(body), 16):  # ~1.2 s in all
            sock.sendall(body[i : i + 16])
            time.sleep(0.3)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 202"), answer
    assert server.get("/api/v1/calls/SLOW-OK").status_code == 200


def test_slow_headers_are_cut_off_at_the_keepalive_timeout(live_server):
    """gunicorn's gevent worker reads the request line and headers under its keepalive timeout (5 s)."""
    server = live_server(PATTER_DASH_TOKEN=TOKEN)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    sock.setblocking(False)
    opened = time.monotonic()
    closed_after = None
    while time.monotonic() - opened < 12:
        try:
            sock.send(b"X")  # one byte of a header that never ends
        except OSError:
            closed_after = time.monotonic() - opened
            break
        time.sleep(0.5)
        try:
            if sock.recv(1024) == b"":
                closed_after = time.monotonic() - opened
                break
        except BlockingIOError:
            pass
        except OSError:
            closed_after = time.monotonic() - opened
            break
        assert server.get("/api/v1/health").status_code == 200
    sock.close()
    print(f"slow headers: connection closed after {closed_after} s")
    assert closed_after is not None and 4.0 <= closed_after <= 7.5


# --------------------------------------------- 9. WebSocket handshake, Origin


@pytest.mark.parametrize("path", WS_ROUTES)
def test_malformed_websocket_handshakes_are_400_json(live_server, path):
    server = live_server(PATTER_DASH_TOKEN=TOKEN)
    host = f"127.0.0.1:{server.port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    cases = {
        "no key": {"Sec-WebSocket-Version": "13"},
        "empty key": {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": ""},
        "key not base64": {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "not base64 at all!"},
        "key too short": {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": base64.b64encode(b"short").decode()},
        "no version": {"Sec-WebSocket-Key": GOOD_KEY},
        "version 8": {"Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": GOOD_KEY},
        "version junk": {"Sec-WebSocket-Version": "thirteen", "Sec-WebSocket-Key": GOOD_KEY},
        "nothing": {},
    }
    for name, headers in cases.items():
        status, response_headers, body = raw_exchange(server.port, upgrade_request(server.prefix + path, host, **auth, **headers))
        assert status == 400, (name, status, body)
        assert response_headers["content-type"] == "application/json", name
        error = json.loads(body)["error"]
        assert "WebSocket handshake" in error and "Sec-WebSocket-" in error, (name, error)
        assert response_headers["sec-websocket-version"] == "13", name
    # Credentials are still checked first, and a good handshake still upgrades.
    status, _, _ = raw_exchange(server.port, upgrade_request(server.prefix + path, host))
    assert status == 401
    status, response_headers, _ = raw_exchange(
        server.port, upgrade_request(server.prefix + path, host, **auth, **{"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": GOOD_KEY})
    )
    assert status == 101 and response_headers["upgrade"].lower() == "websocket"
    assert "Traceback" not in server.logs() and "internal error" not in server.logs()


@pytest.mark.parametrize("path", ["/api/v1/ws?types=nope", "/api/v1/ws?last_event_id=abc", "/api/v1/ws?last_event_id=-1",
                                  "/api/v1/ws?call_id=" + "x" * 300])
def test_live_websocket_parameters_are_refused_before_the_upgrade(live_server, path):
    """As /api/v1/events refuses them: a 400 in JSON. Checked after the upgrade, the 400 was written
    as HTTP onto the upgraded socket (the client saw a broken frame)."""
    server = live_server(PATTER_DASH_TOKEN=TOKEN)
    request = upgrade_request(server.prefix + path, f"127.0.0.1:{server.port}", **BEARER,
                              **{"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": GOOD_KEY})
    status, headers, body = raw_exchange(server.port, request)
    assert status == 400 and headers["content-type"] == "application/json", (status, body)
    assert json.loads(body)["error"]
    good = upgrade_request(server.prefix + "/api/v1/ws?types=call_start", f"127.0.0.1:{server.port}", **BEARER,
                           **{"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": GOOD_KEY})
    assert raw_exchange(server.port, good)[0] == 101


def test_a_body_the_server_cannot_frame_is_a_400_on_every_route_that_reads_one(live_server):
    """A chunked body with a bad size, a chunk without its CRLF, a bad extension: 400 in JSON, the
    connection closed after it (the rest of the stream cannot be trusted), no traceback. It was a 500."""
    server = live_server(PATTER_DASH_TOKEN=TOKEN)
    post(server, "call_start", {"call_id": "FRAMED"})
    post(server, "call_end", {"call_id": "FRAMED"})
    routes = [("POST", "/api/v1/ingest"), ("POST", "/api/dashboard/ingest"), ("PATCH", "/api/v1/calls/FRAMED"),
              ("PUT", "/api/v1/calls/FRAMED/recording"), ("POST", "/api/dashboard/calls/delete")]
    bodies = {"bad size": b"zz\r\n{}\r\n0\r\n\r\n", "no CRLF": b"2\r\n{}XX0\r\n\r\n",
              "bad extension": b"2;\x01\r\n{}\r\n0\r\n\r\n"}
    for method, path in routes:
        for name, body in bodies.items():
            head = (f"{method} {server.prefix}{path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                    f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            status, headers, answer = raw_exchange(server.port, head.encode() + body)
            assert status == 400 and headers["content-type"] == "application/json", (method, path, name, status, answer)
            assert "malformed request body" in json.loads(answer)["error"], (method, path, name, answer)
    assert server.get("/api/v1/calls/FRAMED").status_code == 200  # nothing deleted, nothing changed
    assert "Traceback" not in server.logs()


def test_websocket_origin_must_match_scheme_host_and_port(live_server):
    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_CORS_ORIGINS="https://ops.example.com")
    port = server.port
    auth = {"Authorization": f"Bearer {TOKEN}", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": GOOD_KEY}

    def status(host: str, origin: str | None, **extra: str) -> int:
        return raw_exchange(port, upgrade_request("/api/v1/ws", host, Origin=origin, **auth, **extra))[0]

    here = f"127.0.0.1:{port}"
    assert status(here, None) == 101  # not a browser
    assert status(here, f"http://{here}") == 101
    assert status(here, f"HTTP://127.0.0.1:{port}/") == 101  # case and a bare slash do not matter
    assert status(here, "https://ops.example.com") == 101  # a listed CORS origin
    assert status(here, "https://ops.example.com:443") == 101  # ...also with its default port spelled out
    assert status(here, f"https://{here}") == 403  # https page, plain-http server
    assert status(here, f"http://127.0.0.1:{port + 1}") == 403  # another port
    assert status(here, "http://127.0.0.1") == 403  # port 80 is another port
    assert status(here, f"http://localhost:{port}") == 403  # another host
    assert status(here, f"ws://{here}") == 403
    assert status(here, "null") == 403
    assert status(here, f"http://user@{here}") == 403
    # Default ports: Host without a port is port 80 for http.
    assert status("127.0.0.1", "http://127.0.0.1:80") == 101
    assert status("127.0.0.1:80", "http://127.0.0.1") == 101
    assert status("127.0.0.1", "https://127.0.0.1") == 403
    # Reached over TLS through a proxy (gunicorn trusts X-Forwarded-Proto from loopback):
    # now the https origin is the matching one.
    assert status("dash.example.com", "https://dash.example.com", **{"X-Forwarded-Proto": "https"}) == 101
    assert status("dash.example.com", "https://dash.example.com:443", **{"X-Forwarded-Proto": "https"}) == 101
    assert status("dash.example.com", "http://dash.example.com", **{"X-Forwarded-Proto": "https"}) == 403


# ------------------------------------------------- 9. session expiry, sign-out


def _login(server) -> requests.Response:
    response = requests.get(f"{server.url}/dashboard?token={TOKEN}", allow_redirects=False, timeout=5)
    assert response.status_code == 303
    return response


def _cookie_value(response: requests.Response) -> str:
    return response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def test_session_cookie_expires_and_its_issue_time_is_signed(live_server):
    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_SESSION_MAX_AGE="2")
    login = _login(server)
    attributes = [part.strip().lower() for part in login.headers["Set-Cookie"].split(";")[1:]]
    assert "max-age=2" in attributes, attributes
    value = _cookie_value(login)
    issued, _, mac = value.partition(".")
    assert abs(int(issued) - time.time()) < 5 and len(mac) == 64
    cookies = {"patter_dash_session": value}
    assert requests.get(f"{server.url}/api/v1/calls", cookies=cookies, timeout=5).status_code == 200
    # A later issue time (or any other edit) breaks the signature.
    flipped = mac[:-1] + ("1" if mac[-1] == "0" else "0")  # a different last digit, whatever it was
    for forged in (f"{int(issued) + 1}.{mac}", f"{issued}.{flipped}", f"{issued}.", mac, f"9999999999999.{mac}", ""):
        assert requests.get(f"{server.url}/api/v1/calls", cookies={"patter_dash_session": forged}, timeout=5).status_code == 401, forged
    time.sleep(3.1)
    # The browser would have dropped it; a copy sent anyway is refused, and told to go.
    expired = requests.get(f"{server.url}/api/v1/calls", cookies=cookies, timeout=5)
    assert expired.status_code == 401
    assert "patter_dash_session=;" in expired.headers["Set-Cookie"] and "Max-Age=0" in expired.headers["Set-Cookie"]
    page = requests.get(f"{server.url}/dashboard", cookies=cookies, timeout=5)
    assert page.status_code == 401 and "Sign in" in page.text


def test_sign_out_clears_the_cookie_and_only_its_own(live_server):
    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_URL_PREFIX="/ops/voice")
    login = _login(server)
    cookies = {"patter_dash_session": _cookie_value(login)}
    page = requests.get(f"{server.url}/dashboard", cookies=cookies, timeout=5)
    assert page.status_code == 200 and 'action="/ops/voice/dashboard/logout"' in page.text and "Sign out" in page.text
    url = f"{server.url}/dashboard/logout"
    # Another site's form POST carries no SameSite=Lax cookie, and without one nothing is cleared.
    foreign = requests.post(url, headers={"Origin": "https://evil.example"}, allow_redirects=False, timeout=5)
    assert foreign.status_code == 303 and "Set-Cookie" not in foreign.headers
    assert requests.get(url, cookies=cookies, allow_redirects=False, timeout=5).status_code == 405
    # The page's own form: Referrer-Policy no-referrer makes the browser send "Origin: null".
    out = requests.post(url, cookies=cookies, headers={"Origin": "null"}, allow_redirects=False, timeout=5)
    assert out.status_code == 303 and out.headers["Location"].rstrip("/") == "/ops/voice/dashboard"
    cleared = out.headers["Set-Cookie"]
    assert cleared.startswith("patter_dash_session=;") and "Max-Age=0" in cleared and "Path=/ops/voice" in cleared
    # A stale cookie (from an old token) is cleared all the same.
    stale = requests.post(url, cookies={"patter_dash_session": "1.deadbeef"}, allow_redirects=False, timeout=5)
    assert stale.status_code == 303 and "Max-Age=0" in stale.headers["Set-Cookie"]
    # No sign-out button where there is no token to sign out of.
    open_ = live_server()
    assert "Sign out" not in requests.get(f"{open_.url}/dashboard", timeout=5).text


def test_slow_body_under_a_threaded_server_gets_408_too():
    """A host app on a threaded server (Werkzeug's, here for real on a socket) gets the deadline too."""
    from werkzeug.serving import make_server

    from patter_dash.run.app import create_app

    app = create_app({"PATTER_DASH_TOKEN": TOKEN, "PATTER_DASH_BODY_TIMEOUT": "1"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = SlowClient(server.server_port, "/api/v1/ingest", 0.3)
        client.sock.setblocking(True)
        client.sock.settimeout(0.3)
        while client.closed_at is None and time.monotonic() - client.opened < 6:
            client.on_readable(time.monotonic())
            client.tick(time.monotonic())
        assert client.answered_at is not None and 0.9 <= client.answered_at - client.opened <= 2.5
        status, body = client.response()
        assert status == 408 and "PATTER_DASH_BODY_TIMEOUT" in body["error"]
        assert client.closed_at is not None
        client.sock.close()
        fine = requests.post(
            f"http://127.0.0.1:{server.server_port}/api/v1/ingest",
            json={"type": "call_start", "data": {"call_id": "THREADED"}}, headers=BEARER, timeout=5,
        )
        assert fine.status_code == 202
    finally:
        server.shutdown()
        app.extensions["patter_dash"].stop()


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium not installed")
def test_sign_out_button_in_the_browser(live_server, open_page):  # noqa: F811
    """The header's "Sign out" clears the session: the page then asks for the token again."""
    from playwright.sync_api import expect

    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_URL_PREFIX="/ops/voice")
    page, guard = open_page(viewport=(390, 844))  # phone width: the button must fit the header
    page.goto(f"{server.url}/dashboard?token={TOKEN}")
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")
    button = page.locator("#pd-signout")
    expect(button).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert len(page.context.cookies(server.url + "/dashboard")) == 1
    button.click()
    expect(page.locator("form input[type=password][name=token]")).to_be_visible()
    assert page.context.cookies(server.url + "/dashboard") == []
    assert page.url.rstrip("/") == f"{server.url}/dashboard"
    # Chromium logs the 401 of the sign-in document itself; nothing else may fail
    guard.check(allow=r"^Failed to load resource: the server responded with a status of 401")
