"""Issue 13, "Patter-exact shapes": metrics as Patter gives them, every call id reachable, history order.

The reference for ``metrics`` is Patter 0.7.0 itself, in process: its ``MetricsStore`` behind its own
``/api/v1`` routes (``getpatter.api_routes.mount_api``) and dashboard export, fed what patter-dash, a
real gunicorn + gevent server, is fed (the shared payloads, Patter's ``notify_dashboard`` bodies).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests
from getpatter.api_routes import mount_api

from tests.conftest import payload
from tests.test_patter_routes import REALTIME, Patter, notified, push


def test_detail_and_json_export_carry_metrics_with_turns_as_patter_does(live_server: Any) -> None:
    server = live_server()
    patter = Patter()
    mount_api(patter.client.app, patter.store)
    *live, end = payload("realtime_call.json")
    for envelope in live:
        patter.callback(envelope)
    server.post_events(live)
    # Live: Patter's record has no CallMetrics yet; ours says so with null.
    ours = server.get(f"/api/v1/calls/{REALTIME}").json()["data"]
    assert "metrics" not in patter.get(f"/api/v1/calls/{REALTIME}").json()["data"]
    assert ours["metrics"] is None and [t["turn_index"] for t in ours["turns"]] == [0, 1]

    patter.callback(end)
    server.post_events([end])
    pushed = notified("sdk_notify_call_end.json", "CA-notify")
    patter.notify(pushed)
    push(server, pushed)
    for call_id, sent in ((REALTIME, end["data"]["metrics"]), ("CA-notify", pushed["metrics"])):
        theirs = patter.get(f"/api/v1/calls/{call_id}").json()["data"]["metrics"]
        detail = server.get(f"/api/v1/calls/{call_id}").json()["data"]
        assert detail["metrics"] == theirs == sent, call_id  # the whole CallMetrics, key for key
        assert list(detail["metrics"]["turns"][0]) == list(sent["turns"][0])
        assert detail["turns"] == detail["metrics"]["turns"] == sent["turns"]  # and still at the top level
        assert len(detail["turns"]) >= 2
    # The JSON and NDJSON exports and full=1 give the same records; Patter's own export the same metrics.
    exported = {c["call_id"]: c for c in server.get("/api/v1/export/json").json()}
    ndjson = {json.loads(line)["call_id"]: json.loads(line) for line in server.get("/api/v1/export/json?format=ndjson").text.splitlines()}
    full = {c["call_id"]: c for c in server.get("/api/v1/calls?full=1").json()["data"]}
    theirs = {c["call_id"]: c for c in patter.get("/api/dashboard/export/calls?format=json").json()}
    for call_id in (REALTIME, "CA-notify"):
        assert exported[call_id]["metrics"] == ndjson[call_id]["metrics"] == full[call_id]["metrics"] == theirs[call_id]["metrics"]
        assert exported[call_id]["metrics"]["turns"] == exported[call_id]["turns"]


def test_a_call_closed_by_a_status_or_ended_without_metrics_has_patters_metrics(live_server: Any) -> None:
    server = live_server()
    patter = Patter()
    mount_api(patter.client.app, patter.store)
    patter.store.record_call_start({"call_id": "CA-busy"})
    patter.store.update_call_status("CA-busy", "busy")
    server.post_events([{"type": "call_start", "data": {"call_id": "CA-busy"}},
                        {"type": "call_status", "data": {"call_id": "CA-busy", "status": "busy"}}])
    bare = {"call_id": "CA-bare", "caller": "+15550003", "callee": "+15550004", "ended_at": 1_770_000_000.0}
    patter.notify(bare)
    push(server, bare)
    assert server.get("/api/v1/calls/CA-busy").json()["data"]["metrics"] is None
    assert patter.get("/api/v1/calls/CA-busy").json()["data"]["metrics"] is None
    ours, theirs = server.get("/api/v1/calls/CA-bare").json()["data"]["metrics"], patter.get("/api/v1/calls/CA-bare").json()["data"]["metrics"]
    assert set(ours) == set(theirs)  # Patter's stand-in: zero cost and latencies, empty provider_mode, turns
    assert {k: v for k, v in ours.items() if k != "duration_seconds"} == {k: v for k, v in theirs.items() if k != "duration_seconds"}


HOSTILE_IDS = ["active", "a/b", "100%", "100%25", "with space", "通话-ü-☎", "..", ".", "a//b", "/lead", "trail/", "?x=1&id=2", "#frag"]


def test_every_call_id_is_reachable(live_server: Any) -> None:
    server = live_server()
    server.post_events([{"type": "call_start", "data": {"call_id": "CA-live"}}])
    server.post_events([{"type": "call_end", "data": {"call_id": i, "ended_at": 1_770_000_000.0}} for i in HOSTILE_IDS])
    for call_id in HOSTILE_IDS:
        by_query = server.get(f"/api/v1/call?id={quote(call_id, safe='')}")
        assert by_query.status_code == 200, call_id
        assert by_query.json()["data"]["call_id"] == call_id
    # The path form reaches the ids a path can carry, percent-encoded as encodeURIComponent does.
    for call_id in ("a/b", "100%", "100%25", "with space", "通话-ü-☎", "?x=1&id=2", "#frag"):
        response = server.get(f"/api/v1/calls/{quote(call_id, safe='')}")
        assert response.status_code == 200 and response.json()["data"]["call_id"] == call_id, call_id
    # "active" by path is the live list, encoded or not: the path is decoded before routing.
    for path in ("active", "%61ctive"):
        assert [c["call_id"] for c in server.get(f"/api/v1/calls/{path}").json()["data"]] == ["CA-live"]
    assert server.get("/api/v1/call?id=CA-live").json()["data"]["ended_at"] is None
    for query in ("", "?id=", "?other=1"):
        response = server.get(f"/api/v1/call{query}")
        assert response.status_code == 400 and "'id'" in response.json()["error"], query
    missing = server.get("/api/v1/call?id=nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "Call not found"})
    assert requests.head(f"{server.url}/api/v1/call?id=active", timeout=10).status_code == 200
    # Deleting by query: any id, with the same rules as DELETE /calls/{id}.
    for call_id in ("active", "..", "/lead"):
        deleted = requests.delete(f"{server.url}/api/v1/call", params={"id": call_id}, timeout=10)
        assert deleted.status_code == 200 and deleted.json() == {"count": 1, "call_ids": [call_id]}, call_id
        assert server.get("/api/v1/call", params={"id": call_id}).status_code == 404
    refused = requests.delete(f"{server.url}/api/v1/call", params={"id": "a/b"}, headers={"Origin": "https://evil.example"}, timeout=10)
    assert refused.status_code == 403
    # The dashboard's page is given the query form for its detail and delete requests.
    page = server.get("/dashboard/").text
    assert 'data-api-call="/api/v1/call?id=__ID__"' in page


def _ended(call_id: str, started: float, ended: float) -> dict[str, Any]:
    return {"type": "call_end", "data": {"call_id": call_id, "ended_at": ended, "metrics": {"duration_seconds": ended - started}}}


def _order(server: Any, query: str) -> list[str]:
    ids: list[str] = []
    while True:
        body = server.get(f"/api/v1/calls?{query}&limit=3&offset={len(ids)}").json()
        if not body["data"]:
            return ids
        ids += [c["call_id"] for c in body["data"]]


def test_history_sorts_by_start_or_by_end_in_memory_and_on_disk(live_server: Any) -> None:
    base = 1_770_000_000.0
    # Completion order C0..C9; starts deliberately out of that order (long calls end late), two starts tied.
    starts = [50, 10, 90, 30, 70, 20, 90, 0, 60, 40]
    calls = [(f"C{i}", base + s, base + 100 + i) for i, s in enumerate(starts)]
    by_end = [c for c, _, _ in reversed(calls)]
    by_start = [c for c, _, _ in sorted(calls, key=lambda c: (c[1], int(c[0][1:])), reverse=True)]
    assert by_start[:2] == ["C6", "C2"]  # a tie: the later completion first
    for config in ({}, {"PATTER_DASH_MAX_CALLS": 4}):
        server = live_server(**config)
        for call_id, started, ended in calls:
            server.post_events([_ended(call_id, started, ended)])
        if config:
            assert server.get("/api/v1/health").json()["store"]["completed"] == 4  # the rest only on disk
        assert _order(server, "") == _order(server, "sort=ended_at") == by_end, config
        assert _order(server, "sort=started_at") == by_start, config
        body = server.get("/api/v1/calls?sort=started_at&limit=2&offset=3").json()
        assert [c["call_id"] for c in body["data"]] == by_start[3:5] and body["pagination"]["total"] == 10
        assert _order(server, "sort=started_at&direction=inbound") == []
        window = f"from={base + 20}&to={base + 70}"
        assert _order(server, f"sort=started_at&{window}") == [c for c in by_start if base + 20 <= dict((x, s) for x, s, _ in calls)[c] < base + 70]
        # The exports take the same parameter.
        csv_ids = [line.split(",")[0] for line in server.get("/api/v1/export/csv?sort=started_at").text.splitlines()[1:]]
        assert csv_ids == by_start, config
        assert [c["call_id"] for c in server.get("/api/v1/export/json?sort=started_at").json()] == by_start
        assert [json.loads(x)["call_id"] for x in server.get("/api/v1/export/json?format=ndjson&sort=ended_at").text.splitlines()] == by_end
        for path in ("/api/v1/calls", "/api/v1/export/csv", "/api/v1/export/json"):
            for bad in ("start", "started_at,ended_at", "STARTED_AT", "-started_at"):
                response = server.get(f"{path}?sort={bad}")
                assert response.status_code == 400 and "'sort'" in response.json()["error"], (path, bad)
