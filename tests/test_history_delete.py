"""Deleting calls and retention (issue 12): the API, its guards, the live streams, and restarts.

``DELETE /api/v1/calls/{call_id}`` and ``DELETE /api/v1/calls?before=`` through the Flask test client
(memory and SQLite), then through real gunicorn + gevent on a real history file: the call leaves list,
detail, analytics and the file, SSE and WebSocket readers are told (``call_deleted``), and neither a
restart, a ``kill -9`` nor a client sending the call's events again brings it back. Retention
(``PATTER_DASH_RETENTION_DAYS``) is checked the same way on a server restarted over old history.
The browser side is in test_ui_delete.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket  # websocket-client
from conftest import BLOCKED, LiveServer, post, wait_for
from flask import Flask
from flask.testing import FlaskClient

from patter_dash.journal import JournalUnavailable
from patter_dash.run.app import create_app
from tests.sse import SSEClient

TOKEN = "tok-delete-0001"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
NOW = time.time()
DAY = 86_400.0


def ended(call_id: str, start: float, *, duration: float = 60.0, cost: float = 0.01, key: str | None = None) -> dict[str, Any]:
    """The envelope of a call_end that completes ``call_id``, started at ``start`` (ended_at - duration)."""
    envelope: dict[str, Any] = {"type": "call_end", "data": {
        "call_id": call_id, "caller": "+15550000001", "callee": "+15550000002", "direction": "inbound",
        "ended_at": start + duration,
        "metrics": {"duration_seconds": duration, "provider_mode": "pipeline",
                    "cost": {"stt": cost, "tts": 0.0, "llm": 0.0, "telephony": 0.0, "total": cost}},
        "conversation_history": [{"role": "user", "text": f"words of {call_id}", "timestamp": start + 1}],
    }}
    if key is not None:
        envelope["id"] = key
    return envelope


def started(call_id: str) -> dict[str, Any]:
    return {"type": "call_start", "data": {"call_id": call_id, "caller": "+15550000003", "callee": "+15550000004"}}


def ingest(client: FlaskClient, envelopes: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
    response = client.post("/api/v1/ingest", json={"events": envelopes}, headers=headers or {})
    assert response.status_code in (200, 202), response.get_json()


def listed(target: Any, headers: dict[str, str] | None = None) -> list[str]:
    if isinstance(target, FlaskClient):
        body = target.get("/api/v1/calls?limit=1000", headers=headers or {}).get_json()
    else:
        body = target.get("/api/v1/calls?limit=1000").json()
    return [c["call_id"] for c in body["data"]]


def make_app(**config: Any) -> Flask:
    return create_app({"TESTING": True, **{f"PATTER_DASH_{k.upper()}": v for k, v in config.items()}})


@pytest.fixture(params=["memory", "sqlite"])
def any_client(request: Any, tmp_path: Path) -> Iterator[FlaskClient]:
    """A test client over history in memory, and over a real SQLite file."""
    config = {} if request.param == "memory" else {"db": str(tmp_path / "history.db")}
    app = make_app(**config)
    yield app.test_client()
    app.extensions["patter_dash"].stop()


# ------------------------------------------------------------------ one call


def test_deleting_a_call_takes_it_out_of_list_detail_and_analytics(any_client: FlaskClient) -> None:
    client = any_client
    ingest(client, [ended("A", NOW - 3600, cost=0.01), ended("B", NOW - 1800, cost=0.02), ended("C", NOW - 600, cost=0.04)])
    before = client.get("/api/v1/analytics/overview").get_json()["data"]
    assert before["total_calls"] == 3 and before["total_cost"] == pytest.approx(0.07)

    response = client.delete("/api/v1/calls/B")
    assert response.status_code == 200
    assert response.get_json() == {"count": 1, "call_ids": ["B"]}
    assert response.headers["Cache-Control"] == "no-store"

    assert client.get("/api/v1/calls/B").status_code == 404
    assert listed(client) == ["C", "A"]
    after = client.get("/api/v1/analytics/overview").get_json()["data"]
    assert after["total_calls"] == 2 and after["total_cost"] == pytest.approx(0.05)
    assert after["calls_by_status"] == {"completed": 2}
    costs = client.get("/api/v1/analytics/costs?bucket=hour").get_json()["data"]
    assert costs["calls_analyzed"] == 2 and costs["total_cost"] == pytest.approx(0.05)
    assert sum(p["calls"] for p in costs["series"]) == 2
    exported = client.get("/api/v1/export/json").get_json()
    assert [c["call_id"] for c in exported] == ["C", "A"]
    assert client.get("/api/v1/health").get_json()["history"]["calls"] == 2

    again = client.delete("/api/v1/calls/B")
    assert (again.status_code, again.get_json()) == (404, {"error": "Call not found"})
    assert client.delete("/api/v1/calls/never-was").status_code == 404


def test_hostile_ids_are_deleted_exactly(any_client: FlaskClient) -> None:
    odd = ["a/b/c", "line\nbreak", "ümlaut ☎", "%2F..%2F", "x" * 256]
    ingest(any_client, [ended(cid, NOW - 600 - i) for i, cid in enumerate(odd)] + [ended("keep", NOW - 60)])
    for cid in odd:
        response = any_client.delete("/api/v1/calls/" + requests.utils.quote(cid, safe=""))
        assert response.status_code == 200, cid
        assert response.get_json()["call_ids"] == [cid]
    assert listed(any_client) == ["keep"]


def test_a_live_call_can_be_deleted_and_its_known_events_do_not_bring_it_back(any_client: FlaskClient) -> None:
    ingest(any_client, [{**started("LIVE"), "id": "live-start"}])
    assert [c["call_id"] for c in any_client.get("/api/v1/calls/active").get_json()["data"]] == ["LIVE"]
    assert any_client.delete("/api/v1/calls/LIVE").get_json() == {"count": 1, "call_ids": ["LIVE"]}
    assert any_client.get("/api/v1/calls/active").get_json()["data"] == []
    assert any_client.get("/api/v1/calls/LIVE").status_code == 404
    # The same event again (a client retrying) is a duplicate: nothing comes back.
    ack = any_client.post("/api/v1/ingest", json={**started("LIVE"), "id": "live-start"})
    assert ack.status_code == 200 and ack.get_json()["duplicate"] is True
    assert any_client.get("/api/v1/calls/LIVE").status_code == 404
    # Anything new the runtime says about it starts a new record (documented).
    post(any_client, "transcript", {"call_id": "LIVE", "role": "user", "text": "still here"})
    assert "no_start" in any_client.get("/api/v1/calls/LIVE").get_json()["data"]["flags"]


# --------------------------------------------------------------------- bulk


def test_bulk_delete_takes_finished_calls_started_before_the_time(any_client: FlaskClient) -> None:
    client = any_client
    ingest(client, [ended(f"old{i}", NOW - 10 * DAY + i) for i in range(3)]
           + [ended("mid", NOW - 2 * DAY), ended("new", NOW - 60), started("LIVE")])
    cutoff = NOW - 5 * DAY
    response = client.delete(f"/api/v1/calls?before={cutoff}")
    assert response.status_code == 200
    assert response.get_json() == {"count": 3, "before": cutoff}
    assert listed(client) == ["new", "mid"]
    assert client.get("/api/v1/analytics/overview").get_json()["data"]["total_calls"] == 2
    # Live calls are not history yet: a bulk deletion leaves them, whatever their start.
    assert client.delete(f"/api/v1/calls?before={NOW + DAY}").get_json()["count"] == 2
    assert listed(client) == []
    assert [c["call_id"] for c in client.get("/api/v1/calls/active").get_json()["data"]] == ["LIVE"]
    assert client.delete(f"/api/v1/calls?before={NOW + DAY}").get_json()["count"] == 0


@pytest.mark.parametrize(("value", "deleted"), [
    ("2000-01-01", 0),
    ("2000-01-02T00:00:00Z", 1),
    ("2000-01-01T12:00:01", 1),  # no zone: UTC, like from/to
    ("2000-01-02T01:00:00+02:00", 1),
    ("946771200", 1),
    ("946771200.5", 1),
])
def test_before_is_parsed_like_from_and_to(client: FlaskClient, value: str, deleted: int) -> None:
    ingest(client, [ended("Y2K", 946_728_000.0)])  # started 2000-01-01T12:00:00Z
    response = client.delete("/api/v1/calls", query_string={"before": value})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["count"] == deleted


@pytest.mark.parametrize("query", ["", "?before=", "?before=%20", "?before=yesterday", "?before=1e400", "?before=nan",
                                   "?before=2026-13-01", "?before=1_000", "?before=%EF%BC%91"])
def test_a_missing_or_bad_before_is_a_400_naming_it(client: FlaskClient, query: str) -> None:
    ingest(client, [ended("kept", NOW - DAY)])
    response = client.delete("/api/v1/calls" + query)
    assert (response.status_code, response.mimetype) == (400, "application/json")
    assert "'before'" in response.get_json()["error"]
    assert listed(client) == ["kept"]


def test_bulk_deletion_runs_in_batches_each_announced(client: FlaskClient, app: Flask) -> None:
    from patter_dash.core.pipeline import PURGE_BATCH

    n = PURGE_BATCH * 2 + 7
    for start in range(0, n, 500):
        ingest(client, [ended(f"c{i}", NOW - DAY - i) for i in range(start, min(n, start + 500))])
    hub = app.extensions["patter_dash"].pipeline.hub
    sub = hub.subscribe(types=["call_deleted"])
    assert client.delete(f"/api/v1/calls?before={NOW}").get_json()["count"] == n
    frames = hub.read(sub, 1.0)
    assert [len(json.loads(f.sse.split(b"data: ", 1)[1])["call_ids"]) for f in frames] == [PURGE_BATCH, PURGE_BATCH, 7]


# ----------------------------------------------------------- auth and origin


@pytest.fixture
def secured() -> Iterator[FlaskClient]:
    app = make_app(token=TOKEN)
    client = app.test_client()
    ingest(client, [ended(f"S{i}", NOW - 600 - i) for i in range(6)], headers=BEARER)
    yield client
    app.extensions["patter_dash"].stop()


def test_deleting_needs_the_bearer_header_or_the_session_cookie(secured: FlaskClient) -> None:
    for path in ("/api/v1/calls/S0", f"/api/v1/calls?before={NOW}"):
        response = secured.delete(path)
        assert (response.status_code, response.mimetype) == (401, "application/json")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        # A token in the URL opens reads, never writes (it would sit in logs and histories).
        sep = "&" if "?" in path else "?"
        assert secured.delete(f"{path}{sep}token={TOKEN}").status_code == 401
        assert secured.delete(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert len(listed(secured, BEARER)) == 6
    assert secured.delete("/api/v1/calls/S0", headers=BEARER).status_code == 200
    # The dashboard page deletes with its session cookie, from its own origin.
    assert secured.get(f"/dashboard?token={TOKEN}").status_code == 303
    assert secured.delete("/api/v1/calls/S1", headers={"Origin": "http://localhost"}).status_code == 200
    assert secured.delete("/api/v1/calls/S2").status_code == 200  # not a browser: no Origin
    assert listed(secured) == ["S5", "S4", "S3"]


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:8080", "https://localhost", "null", "http://localhost.evil.example"])
def test_a_cross_origin_delete_is_refused_whatever_the_credentials(secured: FlaskClient, origin: str) -> None:
    assert secured.get(f"/dashboard?token={TOKEN}").status_code == 303  # the browser holds the cookie
    for headers in ({"Origin": origin}, {"Origin": origin, **BEARER}):
        for path in ("/api/v1/calls/S0", f"/api/v1/calls?before={NOW}"):
            response = secured.delete(path, headers=headers)
            assert (response.status_code, response.mimetype) == (403, "application/json"), (origin, headers, path)
            assert "Origin" in response.get_json()["error"]
    assert len(listed(secured)) == 6


def test_a_tokenless_local_dashboard_still_refuses_other_sites(client: FlaskClient) -> None:
    """No token: this machine's requests are open, and so its browser, on any site, is one of them."""
    ingest(client, [ended("L1", NOW - 60), ended("L2", NOW - 30)])
    refused = client.delete("/api/v1/calls/L1", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert client.delete(f"/api/v1/calls?before={NOW}", headers={"Origin": "null"}).status_code == 403
    assert client.delete("/api/v1/calls/L1", headers={"Host": "rebind.evil.example"}).status_code == 403
    assert listed(client) == ["L2", "L1"]
    assert client.delete("/api/v1/calls/L1", headers={"Origin": "http://localhost"}).status_code == 200
    assert client.delete("/api/v1/calls/L2").status_code == 200


def test_preflights_grant_a_cross_origin_delete_to_listed_origins_only_and_never_with_cookies() -> None:
    app = make_app(token=TOKEN, cors_origins="https://ops.example.com")
    client = app.test_client()
    try:
        ingest(client, [ended("P1", NOW - 60)], headers=BEARER)
        ask = {"Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "authorization"}
        foreign = client.options("/api/v1/calls/P1", headers={"Origin": "https://evil.example", **ask})
        assert not [h for h in foreign.headers.keys() if h.lower().startswith("access-control-")]
        listed_origin = client.options("/api/v1/calls/P1", headers={"Origin": "https://ops.example.com", **ask})
        assert listed_origin.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
        assert "DELETE" in listed_origin.headers["Access-Control-Allow-Methods"]
        # Without Allow-Credentials a browser never sends the cookie cross-origin: the listed
        # origin deletes with the Bearer header, like any other client.
        assert "Access-Control-Allow-Credentials" not in listed_origin.headers
        assert client.delete("/api/v1/calls/P1", headers={"Origin": "https://ops.example.com"}).status_code == 401
        done = client.delete("/api/v1/calls/P1", headers={"Origin": "https://ops.example.com", **BEARER})
        assert done.status_code == 200 and done.headers["Access-Control-Allow-Origin"] == "https://ops.example.com"
    finally:
        app.extensions["patter_dash"].stop()


# ------------------------------------------------------------------ OpenAPI


def test_the_document_describes_deletion_and_real_answers_fit_it(client: FlaskClient) -> None:
    import jsonschema_rs

    document = client.get("/api/v1/openapi.json").get_json()

    def check(schema: dict[str, Any], body: Any) -> None:
        jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]}).validate(body)

    one = document["paths"]["/api/v1/calls/{call_id}"]["delete"]
    bulk = document["paths"]["/api/v1/calls"]["delete"]
    assert (one["operationId"], bulk["operationId"]) == ("deleteCall", "deleteCalls")
    assert {"200", "403", "404", "503"} <= set(one["responses"]) and {"200", "400", "403", "503"} <= set(bulk["responses"])
    assert "Retry-After" in bulk["responses"]["503"]["headers"]
    before = document["components"]["parameters"]["before"]
    assert before["required"] is True and before["allowEmptyValue"] is False
    assert "call_deleted" in document["components"]["parameters"]["types"]["description"]
    assert "call_deleted" in document["paths"]["/api/v1/events"]["get"]["responses"]["200"]["description"]

    ingest(client, [ended("D1", NOW - DAY), ended("D2", NOW - 60)])
    hub = client.application.extensions["patter_dash"].pipeline.hub
    sub = hub.subscribe(types=["call_deleted"])
    for path, operation, status in (
        ("/api/v1/calls/D2", one, 200),
        ("/api/v1/calls/D2", one, 404),
        (f"/api/v1/calls?before={NOW}", bulk, 200),
        ("/api/v1/calls?before=soon", bulk, 400),
        ("/api/v1/calls/D1", one, 404),
    ):
        response = client.delete(path)
        assert response.status_code == status, path
        check(operation["responses"][str(status)]["content"]["application/json"]["schema"], response.get_json())
    frames = hub.read(sub, 1.0)
    assert len(frames) == 2
    for frame in frames:
        check({"$ref": "#/components/schemas/CallDeletedFrame"}, json.loads(frame.sse.split(b"data: ", 1)[1]))
    check({"$ref": "#/components/schemas/Health"}, client.get("/api/v1/health").get_json())


def test_with_a_token_the_document_says_deletion_takes_the_header_or_the_cookie(secured: FlaskClient) -> None:
    document = secured.get("/api/v1/openapi.json", headers=BEARER).get_json()
    for path in ("/api/v1/calls", "/api/v1/calls/{call_id}"):
        operation = document["paths"][path]["delete"]
        assert operation["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]  # never ?token=
        assert "401" in operation["responses"]


# ------------------------------------------------------------ journal failure


def test_when_the_file_cannot_be_written_nothing_is_deleted_and_the_answer_is_503(tmp_path: Path) -> None:
    app = make_app(db=str(tmp_path / "history.db"))
    client = app.test_client()
    pipeline = app.extensions["patter_dash"].pipeline
    try:
        ingest(client, [ended("F1", NOW - 60), ended("F2", NOW - 30)])
        journal = pipeline.journal
        real_forget = journal.forget

        def full(call_ids: list[str]) -> list[Any]:
            raise JournalUnavailable(f"{journal.path}: database or disk is full")

        journal.forget = full  # what SQLite answers on a full disk, at the deletion's own transaction
        for path in ("/api/v1/calls/F1", f"/api/v1/calls?before={NOW}"):
            response = client.delete(path)
            assert (response.status_code, response.mimetype) == (503, "application/json")
            assert response.headers["Retry-After"] == "1"
            assert "disk is full" in response.get_json()["error"]
            assert listed(client) == ["F2", "F1"]  # the file first: nothing left memory either
            health = client.get("/api/v1/health").get_json()
            assert health["status"] == "degraded" and "disk is full" in health["history"]["error"]
            journal.forget = real_forget
            # Writing resumes by itself (the writer retries each second); then the deletion goes through.
            wait_for(lambda: client.get("/api/v1/health").get_json()["status"] == "ok", timeout=5)
            journal.forget = full
        journal.forget = real_forget
        assert client.delete("/api/v1/calls/F1").status_code == 200
        assert listed(client) == ["F2"]
    finally:
        app.extensions["patter_dash"].stop()


# ---------------------------------------------------------------- live server


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the server's history file as it is on disk (read-only, beside the running server)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def stored(db: Path) -> set[str]:
    """Every call the file holds: written whole (calls), or still as its events."""
    return {r[0] for r in rows(db, "SELECT call_id FROM calls UNION SELECT call_id FROM events")}


#: Printed by a gevent worker's interpreter at exit after SIGTERM (logging's weakref callback runs
#: once gevent's thread module is torn down); not an error of the server.
EXIT_NOISE = "Exception ignored in: <function _removeHandlerRef"


def tracebacks(logs: str) -> int:
    return logs.count("Traceback") - logs.count(EXIT_NOISE)


def deleting(server: LiveServer, path: str, status: int = 200) -> dict[str, Any]:
    response = requests.delete(server.url + path, headers=server.headers, timeout=30)
    assert response.status_code == status, response.text
    return response.json()


def views(server: LiveServer) -> dict[str, Any]:
    """Everything a reader sees of history, to compare across restarts."""
    return {
        "list": server.get("/api/v1/calls?limit=1000").json(),
        "overview": server.get("/api/v1/analytics/overview").json(),
        "costs": server.get("/api/v1/analytics/costs?bucket=day").json(),
    }


def test_a_deleted_call_never_comes_back_after_restart_or_kill_9(live_server: Any, tmp_path: Path) -> None:
    server = live_server(PATTER_DASH_TOKEN=TOKEN)
    db = tmp_path / "data" / "history.db"
    calls = [ended(f"R{i}", NOW - (10 - i) * 3600, cost=0.001 * (i + 1), key=f"end-R{i}") for i in range(10)]
    server.post_events([{**started(f"R{i}"), "id": f"start-R{i}"} for i in range(10)])
    server.post_events(calls)
    server.post_events([started("LIVE")])

    assert deleting(server, "/api/v1/calls/R5") == {"count": 1, "call_ids": ["R5"]}
    assert deleting(server, f"/api/v1/calls?before={NOW - 7.5 * 3600}")["count"] == 3  # R0, R1, R2
    kept = [f"R{i}" for i in (9, 8, 7, 6, 4, 3)]
    assert [c["call_id"] for c in server.get("/api/v1/calls").json()["data"]] == kept
    seen = views(server)
    assert seen["overview"]["data"]["total_calls"] == 6
    assert seen["overview"]["data"]["total_cost"] == pytest.approx(0.001 * (10 + 9 + 8 + 7 + 5 + 4))
    assert stored(db) == {*kept, "LIVE"}

    server.stop()  # SIGTERM: a clean restart
    server.start()
    assert views(server) == seen
    for gone in ("R0", "R1", "R2", "R5"):
        assert server.get(f"/api/v1/calls/{gone}").status_code == 404
    assert server.get("/api/v1/calls/LIVE").json()["data"]["status"] != "completed"
    # A client that retries the calls' own events (same ids) changes nothing.
    replay = requests.post(f"{server.url}/api/v1/ingest", headers=server.headers, timeout=10,
                           json={"events": [{**started("R5"), "id": "start-R5"}, calls[5], calls[0]]})
    assert replay.status_code == 200 and all(a["duplicate"] for a in replay.json()["accepted"])
    assert views(server) == seen

    assert deleting(server, "/api/v1/calls/R9") == {"count": 1, "call_ids": ["R9"]}
    assert deleting(server, "/api/v1/calls/LIVE") == {"count": 1, "call_ids": ["LIVE"]}
    seen = views(server)
    server.kill()  # kill -9 of master and worker: an answered deletion is on disk
    server.start()
    assert views(server) == seen
    assert server.get("/api/v1/calls/R9").status_code == 404
    assert server.get("/api/v1/calls/LIVE").status_code == 404
    assert server.get("/api/v1/calls/active").json()["data"] == []
    assert not tracebacks(server.logs()), server.logs()[-3000:]


def test_streams_announce_deletions_to_every_reader(live_server: Any) -> None:
    server = live_server()
    server.post_events([ended(f"W{i}", NOW - DAY - i) for i in range(5)] + [ended("W-new", NOW - 60)])
    everything = SSEClient(f"{server.url}/api/v1/events")
    following = SSEClient(f"{server.url}/api/v1/events?call_id=W3")
    deletions = SSEClient(f"{server.url}/api/v1/events?types=call_deleted")
    ws = websocket.create_connection(server.url.replace("http://", "ws://") + "/api/v1/ws", timeout=10)
    for stream in (everything, following, deletions):
        assert stream.status == 200
        stream.next_block()
    wait_for(lambda: server.get("/api/v1/health").json()["subscribers"]["count"] == 4)

    deleting(server, "/api/v1/calls/W0")
    one = everything.next_event()
    assert one["event"] == "call_deleted"
    assert one["data"] == {"seq": one["id"], "type": "call_deleted", "call_ids": ["W0"]}
    assert deletions.next_event()["data"]["call_ids"] == ["W0"]
    assert json.loads(ws.recv()) == {"id": one["id"], "event": "call_deleted", "data": one["data"]}

    assert deleting(server, f"/api/v1/calls?before={NOW - DAY + 1}")["count"] == 4
    bulk = everything.next_event()
    assert bulk["event"] == "call_deleted" and sorted(bulk["data"]["call_ids"]) == ["W1", "W2", "W3", "W4"]
    assert bulk["id"] > one["id"]
    # A reader following one call hears of its deletion even in a bulk frame.
    assert following.next_event()["data"] == bulk["data"]
    assert deletions.next_event()["data"] == bulk["data"]
    # Resuming from before the deletions replays them too.
    resumed = SSEClient(f"{server.url}/api/v1/events", headers={"Last-Event-ID": str(one["id"] - 1)})
    resumed.next_block()
    assert [resumed.next_event()["event"] for _ in range(2)] == ["call_deleted", "call_deleted"]
    bad = requests.get(f"{server.url}/api/v1/events?types=call_removed", timeout=5)
    assert bad.status_code == 400 and "call_deleted" in bad.json()["error"]
    for stream in (everything, following, deletions, resumed):
        stream.close()
    ws.close()


# ------------------------------------------------------------------ retention


def test_retention_purges_old_calls_in_the_background_and_announces_it(tmp_path: Path) -> None:
    """Old calls (their call_end puts the start 10 days back) are purged at start with RETENTION_DAYS=5.

    MAX_CALLS=10: most old calls are only on disk after the restart, so the purge takes them
    out of the file and out of analytics without ever loading them.
    """
    config = {"PATTER_DASH_MAX_CALLS": "10"}
    first = LiveServer(tmp_path, {**config, "PATTER_DASH_RETENTION_DAYS": "0"}).start()  # keep forever while seeding
    second = None
    try:
        old = [ended(f"old{i}", NOW - 10 * DAY + i * 60, cost=0.5) for i in range(30)]
        recent = [ended(f"new{i}", NOW - DAY + i * 60, cost=0.25) for i in range(5)]
        first.post_events(old + recent)
        first.post_events([started("poke")])  # the next transaction writes the finished calls whole
        assert first.get("/api/v1/analytics/overview").json()["data"]["total_calls"] == 35
        first.stop()

        db = tmp_path / "data" / "history.db"
        assert rows(db, "SELECT count(*) FROM calls") == [(35,)]
        second = LiveServer(tmp_path, {**config, "PATTER_DASH_RETENTION_DAYS": "5"}).start(wait=False)
        # The stream is the first request, so it is open before the first retention pass (~1 s after start).
        stream = wait_for(lambda: _connected(f"{second.url}/api/v1/events"), timeout=20, interval=0.05)
        purged: list[str] = []
        while len(purged) < 30:
            event = stream.next_event(timeout=10)
            assert event is not None and event["event"] == "call_deleted", event
            purged += event["data"]["call_ids"]
        assert sorted(purged) == sorted(f"old{i}" for i in range(30))
        stream.close()

        assert sorted(listed(second)) == sorted(f"new{i}" for i in range(5))
        assert second.get("/api/v1/calls/old0").status_code == 404
        assert second.get("/api/v1/calls/new0").status_code == 200
        overview = second.get("/api/v1/analytics/overview").json()["data"]
        assert overview["total_calls"] == 5 and overview["total_cost"] == pytest.approx(1.25)
        series = second.get("/api/v1/analytics/costs?bucket=day").json()["data"]["series"]
        assert sum(p["calls"] for p in series) == 5 and all(p["t"] >= NOW - 2 * DAY for p in series)
        assert stored(db) == {*(f"new{i}" for i in range(5)), "poke"}
        assert second.get("/api/v1/health").json()["history"]["calls"] == 5
    finally:
        for server in (first, second):
            if server is not None:
                server.kill()
        logs = "".join(s.logs() for s in (first, second) if s is not None)
        assert BLOCKED not in logs, logs[-3000:]
        assert not tracebacks(logs), logs[-3000:]


def _connected(url: str) -> SSEClient | None:
    try:
        stream = SSEClient(url)
    except requests.RequestException:
        return None
    if stream.status != 200:
        stream.close()
        return None
    stream.next_block()
    return stream
