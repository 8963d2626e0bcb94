"""The read API under /api/v1: history, live calls, detail, analytics, health, JSON errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
import requests
from conftest import payload, post
from flask import Flask

from patter_dash import PatterDashboard
from patter_dash.run.app import create_app

BASE = 1_780_000_000.0  # 2026-05-28T20:26:40Z
HOUR = 3600


def finish(client, call_id: str, start: float, duration: float = 60.0, **fields: Any) -> None:
    """A completed call started at ``start`` (Patter derives the start from ended_at - duration)."""
    metrics = {"duration_seconds": duration, "provider_mode": "pipeline", **fields.pop("metrics", {})}
    data = {
        "call_id": call_id,
        "caller": "+15550000001",
        "callee": "+15550000002",
        "direction": "inbound",
        "ended_at": start + duration,
        "metrics": metrics,
        **fields,
    }
    post(client, "call_end", data)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [c["call_id"] for c in response.get_json()["data"]]


# ------------------------------------------------------------------ /calls


def test_calls_are_paginated_newest_first(client) -> None:
    for i in range(60):
        finish(client, f"c{i:02d}", BASE + 60 * i)
    body = client.get("/api/v1/calls").get_json()
    assert body["pagination"] == {"limit": 50, "offset": 0, "count": 50, "total": 60}
    assert body["data"][0]["call_id"] == "c59"
    assert ids(client.get("/api/v1/calls?limit=3&offset=2")) == ["c57", "c56", "c55"]
    page = client.get("/api/v1/calls?limit=1000&offset=58").get_json()
    assert [c["call_id"] for c in page["data"]] == ["c01", "c00"]
    assert page["pagination"] == {"limit": 1000, "offset": 58, "count": 2, "total": 60}
    assert client.get("/api/v1/calls?offset=500").get_json()["pagination"]["count"] == 0


def test_filters_status_direction_mode_and_text(client) -> None:
    finish(client, "CA-in", BASE, caller="+15551110000", conversation_history=[{"role": "user", "text": "I need a Refund please"}])
    finish(client, "CA-out", BASE + 60, direction="outbound", callee="+15552220000", metrics={"provider_mode": "realtime"})
    finish(client, "CA-busy", BASE + 120, status="busy")
    assert ids(client.get("/api/v1/calls?status=busy")) == ["CA-busy"]
    assert ids(client.get("/api/v1/calls?direction=outbound")) == ["CA-out"]
    assert ids(client.get("/api/v1/calls?provider_mode=realtime")) == ["CA-out"]
    assert ids(client.get("/api/v1/calls?q=refund")) == ["CA-in"]  # transcript text, any case
    assert ids(client.get("/api/v1/calls?q=5551110")) == ["CA-in"]  # caller
    assert ids(client.get("/api/v1/calls?q=2220000")) == ["CA-out"]  # callee
    assert ids(client.get("/api/v1/calls?q=ca-bu")) == ["CA-busy"]  # call id
    assert ids(client.get("/api/v1/calls?q=nothing-like-this")) == []
    assert ids(client.get("/api/v1/calls?direction=inbound&status=completed")) == ["CA-in"]
    assert client.get("/api/v1/calls?status=busy").get_json()["pagination"]["total"] == 1


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-05-28T21:26:40Z", "2026-05-28T23:26:40Z"),
        ("2026-05-28T21:26:40", "2026-05-28T23:26:40"),  # no zone: UTC
        ("2026-05-28T23:26:40+02:00", "2026-05-29T01:26:40+02:00"),
        ("1780003600", "1780010800"),  # epoch seconds
        ("1780003600.0", "2026-05-28T23:26:40Z"),
    ],
)
def test_time_range_filter(client, start: str, end: str) -> None:
    for h in range(5):  # calls starting at BASE, +1h, ... +4h
        finish(client, f"h{h}", BASE + h * HOUR)
    # from is inclusive, to is exclusive: +1h and +2h.
    assert ids(client.get("/api/v1/calls", query_string={"from": start, "to": end})) == ["h2", "h1"]


def test_date_without_time_is_midnight_utc(client) -> None:
    finish(client, "before", 1_779_926_399.0)  # 2026-05-27T23:59:59Z
    finish(client, "after", 1_779_926_400.0)  # 2026-05-28T00:00:00Z
    assert ids(client.get("/api/v1/calls?from=2026-05-28")) == ["after"]
    assert ids(client.get("/api/v1/calls?to=2026-05-28")) == ["before"]


def test_list_items_are_light_unless_full(client) -> None:
    finish(client, "c1", BASE, conversation_history=[{"role": "assistant", "text": "Hello"}],
           metrics={"turns": [{"turn_index": 0, "user_text": "", "agent_text": "Hello", "latency": {"total_ms": 200.0}}]})
    (light,) = client.get("/api/v1/calls").get_json()["data"]
    assert "transcript" not in light and "turns" not in light
    assert light["turn_count"] == 1
    assert light["cost"] == {"stt": 0.0, "tts": 0.0, "llm": 0.0, "telephony": 0.0, "total": 0.0}
    for flag in ("1", "true"):
        (full,) = client.get(f"/api/v1/calls?full={flag}").get_json()["data"]
        assert full["transcript"] == [{"role": "assistant", "text": "Hello", "timestamp": None}]
        assert full["turns"][0]["agent_text"] == "Hello"
    (light_again,) = client.get("/api/v1/calls?full=0").get_json()["data"]
    assert "transcript" not in light_again


def test_active_calls_and_detail(client) -> None:
    post(client, "call_start", {"call_id": "live-1", "caller": "+15550000009", "direction": "inbound"})
    post(client, "transcript", {"call_id": "live-1", "role": "user", "text": "Hi there"})
    finish(client, "done-1", BASE)
    active = client.get("/api/v1/calls/active").get_json()
    assert active["count"] == 1
    (live,) = active["data"]
    assert live["call_id"] == "live-1" and live["status"] == "in-progress" and live["ended_at"] is None
    assert live["transcript"][0]["text"] == "Hi there"
    assert ids(client.get("/api/v1/calls")) == ["done-1"]  # the history holds completed calls
    detail = client.get("/api/v1/calls/live-1").get_json()["data"]
    assert detail["caller"] == "+15550000009" and detail["transcript"][0]["role"] == "user"
    assert client.get("/api/v1/calls/done-1").get_json()["data"]["status"] == "completed"


def test_unknown_call_is_a_json_404(client) -> None:
    response = client.get("/api/v1/calls/CA-nope")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Call not found"}


@pytest.mark.parametrize("call_id", ["a/b", "line\nbreak", "spaces and ümlauts", "50%", "?#&"])
def test_any_call_id_can_be_fetched(client, call_id: str) -> None:
    finish(client, call_id, BASE)
    response = client.get("/api/v1/calls/" + quote(call_id, safe=""))
    assert response.status_code == 200
    assert response.get_json()["data"]["call_id"] == call_id


# -------------------------------------------------------------- bad params


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=1_0", "limit"),
        ("limit=%EF%BC%91", "limit"),  # a full-width digit one
        ("limit=" + "9" * 5000, "limit"),
        ("offset=-1", "offset"),
        ("full=yes", "full"),
        ("direction=sideways", "direction"),
        ("from=yesterday", "from"),
        ("from=1e300", "from"),
        ("to=nan", "to"),
        ("from=2026-02-01&to=2026-01-01", "to"),
        ("status=" + "x" * 33, "status"),
        ("q=" + "x" * 257, "q"),
    ],
)
def test_invalid_list_parameters_are_400_naming_the_parameter(client, query: str, name: str) -> None:
    response = client.get(f"/api/v1/calls?{query}")
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert f"'{name}'" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/analytics/overview?from=soon", "from"),
        ("/api/v1/analytics/costs?bucket=week", "bucket"),
        ("/api/v1/analytics/costs?to=1&from=2", "to"),
    ],
)
def test_invalid_analytics_parameters(client, path: str, name: str) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert f"'{name}'" in response.get_json()["error"]


def test_empty_parameters_mean_not_given(client) -> None:
    finish(client, "c1", BASE)
    assert ids(client.get("/api/v1/calls?limit=&offset=&full=&status=&direction=&from=&to=&q=&provider_mode=")) == ["c1"]


# --------------------------------------------------------------- analytics


def test_overview_totals(client) -> None:
    cost = {"stt": 0.001, "tts": 0.002, "llm": 0.0005, "telephony": 0.0085, "total": 0.012}
    latency = {"agent_response_ms": 400.0}
    finish(client, "a", BASE, 60.0, metrics={"cost": cost, "latency_avg": latency})
    finish(client, "b", BASE + HOUR, 30.0, metrics={"cost": cost, "latency_avg": {"agent_response_ms": 600.0}})
    finish(client, "c", BASE + 2 * HOUR, 90.0, status="no-answer")
    post(client, "call_start", {"call_id": "live"})
    data = client.get("/api/v1/analytics/overview").get_json()["data"]
    assert data["total_calls"] == 3
    assert data["total_minutes"] == 3.0
    assert data["avg_duration"] == 60.0
    assert data["avg_latency_ms"] == 500.0
    assert data["p95_latency_ms"] == pytest.approx(600.0, rel=0.005)
    assert data["total_cost"] == 0.024
    assert data["cost_breakdown"] == {"stt": 0.002, "tts": 0.004, "llm": 0.001, "telephony": 0.017}
    assert data["active_calls"] == 1
    assert data["calls_by_status"] == {"completed": 2, "no-answer": 1}
    ranged = client.get("/api/v1/analytics/overview?from=2026-05-28T21:00:00Z").get_json()["data"]
    assert (ranged["total_calls"], ranged["total_cost"], ranged["calls_by_status"]) == (2, 0.012, {"completed": 1, "no-answer": 1})


def test_costs_are_exact_and_bucketed(client) -> None:
    # Many calls with awkward six-decimal costs: float sums drift, integer nano-dollars do not.
    expected = Decimal(0)
    for i in range(500):
        total = Decimal(f"0.{(i * 7919) % 1000000:06d}")
        expected += total
        finish(client, f"c{i}", BASE + i * 600, 30.0, metrics={"cost": {"total": float(total), "tts": float(total)}})
    data = client.get("/api/v1/analytics/costs").get_json()["data"]
    assert data["calls_analyzed"] == 500
    assert Decimal(str(data["total_cost"])) == expected
    assert Decimal(str(data["breakdown"]["tts"])) == expected
    assert data["bucket"] == "day"  # 500 calls, 10 minutes apart: more than two days
    assert data["period"] == {"from": None, "to": None}
    assert sum(p["calls"] for p in data["series"]) == 500
    assert sum(Decimal(str(p["cost"]["total"])) for p in data["series"]) == expected
    assert all(p["t"] % 86_400 == 0 for p in data["series"])
    hourly = client.get("/api/v1/analytics/costs?bucket=hour").get_json()["data"]
    assert len(hourly["series"]) == 84 and all(p["t"] % HOUR == 0 for p in hourly["series"])
    assert sum(Decimal(str(p["cost"]["total"])) for p in hourly["series"]) == expected
    window = client.get(f"/api/v1/analytics/costs?from={BASE}&to={BASE + 6000}").get_json()["data"]
    assert window["calls_analyzed"] == 10
    assert window["period"] == {"from": BASE, "to": BASE + 6000}
    assert window["bucket"] == "hour"


def test_costs_stay_exact_when_old_calls_are_evicted() -> None:
    app = create_app({"TESTING": True, "PATTER_DASH_MAX_CALLS": 100})
    client = app.test_client()
    try:
        for i in range(250):
            finish(client, f"c{i}", BASE + i * 60, metrics={"cost": {"total": 0.000123 * (i % 7 + 1)}})
        kept = client.get("/api/v1/calls?limit=1000&full=1").get_json()["data"]
        assert len(kept) == 100
        expected = sum(Decimal(str(c["cost"]["total"])) for c in kept)
        data = client.get("/api/v1/analytics/costs").get_json()["data"]
        assert data["calls_analyzed"] == 100
        assert Decimal(str(data["total_cost"])) == expected
    finally:
        app.extensions["patter_dash"].stop()


def test_health(client) -> None:
    finish(client, "c1", BASE)
    body = client.get("/api/v1/health").get_json()
    assert body["status"] == "ok"
    assert body["store"]["completed"] == 1
    assert body["events"]["accepted"] == 1
    assert body["queue"]["capacity"] == 10_000


# ------------------------------------------------------ JSON errors, routing


@pytest.mark.checklist(32)
def test_unknown_paths_and_methods_answer_json(client) -> None:
    response = client.get("/api/v1/nothing/here")
    assert (response.status_code, response.mimetype) == (404, "application/json")
    assert "error" in response.get_json()
    # DELETE /api/v1/calls is a route since issue 12 (bulk deletion, tests/test_history_delete.py).
    for method, path, allow in (
        ("PUT", "/api/v1/calls", {"GET", "DELETE", "HEAD", "OPTIONS"}),
        ("PUT", "/api/v1/calls/CA1", {"GET", "PATCH", "DELETE", "HEAD", "OPTIONS"}),  # PATCH: issue 13 (annotations)
        ("DELETE", "/api/v1/calls/active", None),
        ("GET", "/api/v1/ingest", {"POST", "OPTIONS"}),
        ("GET", "/api/dashboard/ingest", {"POST", "OPTIONS"}),
        ("POST", "/api/v1/export/csv", {"GET", "HEAD", "OPTIONS"}),
    ):
        response = client.open(path, method=method)
        if allow is None:  # a call may be named "active": deleting it is a 404 like any unknown id
            assert (response.status_code, response.get_json()) == (404, {"error": "Call not found"})
            continue
        assert (response.status_code, response.mimetype) == (405, "application/json"), (method, path)
        assert set(response.headers["Allow"].split(", ")) == allow
    options = client.options("/api/v1/calls")
    assert set(options.headers["Allow"].split(", ")) == {"GET", "DELETE", "HEAD", "OPTIONS"}


def test_websocket_routes_refuse_plain_http_with_json(client) -> None:
    for path in ("/api/v1/ws", "/api/v1/ingest/ws"):
        response = client.get(path)
        assert (response.status_code, response.mimetype) == (400, "application/json")
        assert "WebSocket" in response.get_json()["error"]


@pytest.mark.checklist(32)
def test_a_host_apps_own_404_page_is_left_alone() -> None:
    host = Flask("host")

    @host.errorhandler(404)
    def not_found(_error: Exception) -> tuple[str, int]:
        return "<h1>host's own page</h1>", 404

    @host.get("/")
    def home() -> str:
        return "home"

    dash = PatterDashboard(host, url_prefix="/ops")
    try:
        client = host.test_client()
        assert client.get("/").get_data(as_text=True) == "home"
        for path in ("/nowhere", "/api/v1/calls", "/ops-not-quite", "/ops/elsewhere"):
            response = client.get(path)
            assert (response.status_code, response.get_data(as_text=True)) == (404, "<h1>host's own page</h1>"), path
        inside = client.get("/ops/api/v1/nothing")
        assert (inside.status_code, inside.mimetype) == (404, "application/json")
        assert client.get("/ops/api/v1/calls").status_code == 200
    finally:
        dash.stop()


def test_api_errors_never_leak_a_stack_trace(app, client) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals")

    app.extensions["patter_dash"].store.active_calls = boom
    response = client.get("/api/v1/calls/active")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error"}


# ------------------------------------------------- through gunicorn + gevent


def test_a_slice_of_the_api_through_gunicorn_and_gevent(live_server) -> None:
    server = live_server(PATTER_DASH_TOKEN="live-token", PATTER_DASH_URL_PREFIX="/ops")
    call_id = "CA941522e75e5447c05b6ca6d201f13845"
    start = requests.post(f"{server.url}/api/dashboard/ingest", json=payload("sdk_notify_call_start.json"), timeout=10)
    assert start.status_code == 202  # Patter's own push: loopback, no token
    server.post_events([
        {"type": "transcript", "id": "t1", "data": payload("transcript_user.json")},
        {"type": "turn", "id": "m1", "data": payload("turn_metrics.json")},
        {"type": "call_end", "id": "e1", "data": payload("call_end.json")},
    ])
    for i in range(30):
        metrics = {"duration_seconds": 10, "cost": {"total": 0.001}}
        server.post_events([{"type": "call_end", "data": {"call_id": f"bulk-{i}", "metrics": metrics}}])

    calls = server.get("/api/v1/calls?limit=5")
    assert calls.status_code == 200 and calls.headers["Cache-Control"] == "no-store"
    assert calls.json()["pagination"] == {"limit": 5, "offset": 0, "count": 5, "total": 31}
    detail = server.get(f"/api/v1/calls/{call_id}").json()["data"]
    assert (detail["duration_seconds"], detail["cost"]["total"], len(detail["turns"]), len(detail["transcript"])) == (37.78, 0.025489, 4, 7)
    assert server.get("/api/v1/calls/active").json()["count"] == 0
    overview = server.get("/api/v1/analytics/overview").json()["data"]
    assert (overview["total_calls"], overview["total_cost"]) == (31, 0.055489)
    assert server.get("/api/v1/analytics/costs?bucket=day").json()["data"]["calls_analyzed"] == 31
    assert server.get("/api/v1/openapi.json").json()["servers"][0]["url"] == "/ops"

    export = server.get("/api/v1/export/csv", stream=True)
    assert export.headers.get("Transfer-Encoding") == "chunked"  # streamed, not built in memory
    assert export.headers["Content-Disposition"].startswith("attachment")
    assert len(export.text.strip().splitlines()) == 32
    assert len(server.get("/api/v1/export/json").json()) == 31

    refused = requests.get(f"{server.url}/api/v1/calls", timeout=10)
    assert (refused.status_code, refused.json()["error"].startswith("authentication required")) == (401, True)
    assert requests.get(f"{server.url}/api/v1/calls?token=%C3%A9", timeout=10).status_code == 401
    missing = server.get("/api/v1/nowhere")
    assert (missing.status_code, missing.headers["Content-Type"]) == (404, "application/json")
    wrong = requests.put(f"{server.url}/api/v1/calls", headers=server.headers, timeout=10)
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "DELETE, GET, HEAD, OPTIONS")
    login = requests.get(f"{server.url}/dashboard?token=live-token", allow_redirects=False, timeout=10)
    assert (login.status_code, login.headers["Location"]) == (303, "/ops/dashboard")
    assert "Path=/ops" in login.headers["Set-Cookie"] and "Secure" not in login.headers["Set-Cookie"]
    page = requests.get(f"{server.url}/dashboard", cookies=login.cookies, timeout=10)
    assert page.status_code == 200 and "require-trusted-types-for 'script'" in page.headers["Content-Security-Policy"]
    for response in (calls, refused, missing, page, export):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Traceback" not in server.logs()
