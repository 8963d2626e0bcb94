"""Patter 0.7.0's own dashboard routes (issue 16, item 5), answered as Patter answers them.

The reference is Patter itself, in process: its ``MetricsStore`` behind its own
routes (``getpatter.dashboard.routes.mount_dashboard``), fed the way Patter
feeds it (its embedded server's callbacks, ``server.py``; its standalone
dashboard's ``/api/dashboard/ingest``, ``cli.py``). patter-dash, a real
gunicorn + gevent server, is fed exactly what Patter sends: the shared payloads
(tests/fixtures/patter-payloads) as the callbacks' events, Patter's
``notify_dashboard`` bodies, and ``patter_callbacks()`` in process. Answers are
compared key by key and value by value, except where this dashboard knows
more than Patter's store (its ``started_at`` is Patter's arrival time, ours the
runtime's; its finished ``turns`` are those recorded live, ours the final
``CallMetrics.turns``), and except the one place the issue departs from Patter
on purpose: an unknown id is not reported as deleted.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import time
from datetime import datetime
from typing import Any

import msgspec
import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from getpatter.dashboard.export import calls_to_csv
from getpatter.dashboard.routes import mount_dashboard
from getpatter.dashboard.store import MetricsStore

from patter_dash.core.pipeline import JournalDown
from patter_dash.model import views
from patter_dash.web.export import safe_cell
from tests.conftest import payload, wait_for
from tests.sse import SSEClient
from tests.test_hostile_streams import hard_close, raw_request, read_some, settled

REALTIME = "CArealtime0000000000000000000000001"
SPOKEN = ("user", "assistant")
ROLE_RANK = {"user": 0, "assistant": 1}
FOREIGN_ORIGIN = {"Origin": "https://evil.example"}
#: Patter's cells that are text (neutralised here as /api/v1's export does).
TEXT_COLUMNS = {"call_id", "caller", "callee", "direction", "provider_mode"}


class Patter:
    """Patter 0.7.0's own dashboard, in process: its store, its routes, its event queue."""

    def __init__(self, token: str = "") -> None:
        self.store = MetricsStore()
        app = FastAPI()
        mount_dashboard(app, self.store, token=token)
        self.client = TestClient(app)
        self.queue = self.store.subscribe()

    def callback(self, envelope: dict[str, Any]) -> None:
        """What Patter's embedded server does with the callback behind each event (getpatter/server.py)."""
        kind, data = envelope["type"], dict(envelope["data"])
        if kind == "call_start":
            self.store.record_call_start(data)
        elif kind == "transcript" and data["role"] in SPOKEN and "turnIndex" in data:
            self.store.record_transcript_line(data)  # _on_transcript_line: Realtime and ConvAI lines
        elif kind == "turn":
            self.store.record_turn(data)
        elif kind == "call_end":
            self.store.record_call_end(data, metrics=data.get("metrics"))

    def notify(self, body: dict[str, Any]) -> None:
        """Patter's standalone dashboard's POST /api/dashboard/ingest (getpatter/cli.py), body as posted."""
        data = json.loads(json.dumps(body))
        if data.get("status") == "initiated":
            self.store.record_call_initiated(data)
        elif data.get("ended_at"):
            self.store.record_call_end(data, metrics=data.get("metrics"))
        else:
            self.store.record_call_start(data)

    def get(self, path: str) -> Any:
        return self.client.get(path)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """What Patter's /api/dashboard/events would have sent since the last call: (event, data)."""
        out = []
        while not self.queue.empty():
            event = self.queue.get_nowait()
            out.append((event["type"], json.loads(json.dumps(event["data"], default=str))))
        return out


def realtime() -> list[dict[str, Any]]:
    """A whole Realtime call from Patter's own stream handler, as the callbacks' events."""
    return payload("realtime_call.json")


def notified(name: str, call_id: str, **fields: Any) -> dict[str, Any]:
    """One of Patter's notify_dashboard bodies, for ``call_id``."""
    body = payload(name)
    body["call_id"] = call_id
    if isinstance(body.get("metrics"), dict):
        body["metrics"]["call_id"] = call_id
    body.update(fields)
    return body


def push(server: Any, body: dict[str, Any]) -> None:
    """Patter's own push, as notify_dashboard sends it (no token: a local client)."""
    response = requests.post(f"{server.url}/api/dashboard/ingest", json=body, timeout=10)
    assert response.status_code in (200, 202), response.text


def spoken(lines: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    """The user and assistant lines as Patter's page orders them: by turnIndex, user before assistant."""
    kept = [(line["role"], line["text"], line.get("turnIndex")) for line in lines if line["role"] in SPOKEN]
    return sorted(kept, key=lambda line: (line[2] if line[2] is not None else -1, ROLE_RANK[line[0]]))


def same_keys(ours: dict[str, Any], theirs: dict[str, Any], *, also: set[str] = frozenset()) -> None:
    """Our record has Patter's keys, and besides them at most ``also`` (keys Patter leaves out while empty)."""
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    assert set(ours) - set(theirs) <= also, set(ours) - set(theirs)
    for key in set(ours) - set(theirs):
        assert ours[key] in ([], None), key


def read_events(stream: SSEClient, n: int) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for _ in range(n):
        event = stream.next_event()
        assert event is not None, events
        events.append((event["event"], event["data"]))
    return events


def subscribers(server: Any) -> int:
    return server.get("/api/v1/health").json()["subscribers"]["count"]


# ------------------------------------------------------------- a whole call


def test_a_realtime_call_reads_as_in_patter(live_server: Any) -> None:
    server = live_server()
    patter = Patter()
    stream = SSEClient(f"{server.url}/api/dashboard/events")
    assert stream.status == 200 and stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.next_block(time.monotonic() + 5).startswith("retry:")
    *live, end = realtime()
    for envelope in live:
        patter.callback(envelope)
    server.post_events(live)

    # Live: the same record, key by key; the turns as Patter holds them; its lines, in its page's order.
    ours, theirs = server.get("/api/dashboard/active").json(), patter.get("/api/dashboard/active").json()
    assert len(ours) == len(theirs) == 1
    (call,), (expected,) = ours, theirs
    same_keys(call, expected)
    for key in ("call_id", "caller", "callee", "direction", "status", "turns"):
        assert call[key] == expected[key], key
    assert spoken(call["transcript"]) == spoken(expected["transcript"])
    assert [sorted(line) for line in call["transcript"] if line["role"] in SPOKEN] == [sorted(line) for line in expected["transcript"]]
    # The detail of a live call is the live record (Patter falls back to it), whole.
    detail, expected_detail = server.get(f"/api/dashboard/calls/{REALTIME}"), patter.get(f"/api/dashboard/calls/{REALTIME}")
    assert detail.status_code == expected_detail.status_code == 200
    assert detail.json() == call
    same_keys(detail.json(), expected_detail.json())

    patter.callback(end)
    server.post_events([end])
    ours, theirs = server.get("/api/dashboard/calls").json(), patter.get("/api/dashboard/calls").json()
    assert len(ours) == len(theirs) == 1
    (call,), (expected,) = ours, theirs
    same_keys(call, expected)
    assert set(call) == {"call_id", "caller", "callee", "direction", "started_at", "ended_at", "status", "metrics", "transcript", "turns"}
    for key in ("call_id", "caller", "callee", "direction", "status", "metrics"):
        assert call[key] == expected[key], key  # metrics: Patter's CallMetrics as sent, field by field
    assert call["metrics"] == end["data"]["metrics"]
    assert call["turns"] == end["data"]["metrics"]["turns"]  # the final turns (Patter's: those recorded live)
    assert [t["turn_index"] for t in expected["turns"]] == [t["turn_index"] for t in call["turns"]][: len(expected["turns"])]
    assert spoken(call["transcript"]) and all({"role", "text"} <= set(line) for line in call["transcript"])
    assert call["ended_at"] == end["data"]["ended_at"]
    assert call["started_at"] == pytest.approx(end["data"]["ended_at"] - end["data"]["metrics"]["duration_seconds"])
    assert server.get(f"/api/dashboard/calls/{REALTIME}").json() == call
    missing, expected_missing = server.get("/api/dashboard/calls/nope"), patter.get("/api/dashboard/calls/nope")
    assert (missing.status_code, missing.json()) == (expected_missing.status_code, expected_missing.json()) == (404, {"error": "Not found"})
    assert server.get("/api/dashboard/active").json() == patter.get("/api/dashboard/active").json() == []
    assert server.get("/api/dashboard/aggregates").json() == patter.get("/api/dashboard/aggregates").json()

    # The live stream: Patter's event names and data, event for event (Patter publishes no tool line).
    expected_events = patter.events()
    assert [name for name, _ in expected_events] == [
        "call_start", "transcript_line", "transcript_line", "turn_complete", "transcript_line", "turn_complete",
        "transcript_line", "call_end",
    ]
    assert read_events(stream, len(expected_events)) == expected_events
    stream.close()


def test_patters_own_push_reads_as_in_patter(live_server: Any) -> None:
    server = live_server()
    patter = Patter()
    start = notified("sdk_notify_call_start.json", "CA-notify")
    patter.notify(start)
    push(server, start)
    (call,), (expected,) = server.get("/api/dashboard/active").json(), patter.get("/api/dashboard/active").json()
    same_keys(call, expected, also={"transcript"})  # Patter adds it with the first line
    for key in ("call_id", "caller", "callee", "direction", "status", "turns"):
        assert call[key] == expected[key], key

    end = notified("sdk_notify_call_end.json", "CA-notify")
    patter.notify(end)
    push(server, end)
    (call,), (expected,) = server.get("/api/dashboard/calls").json(), patter.get("/api/dashboard/calls").json()
    same_keys(call, expected)
    for key in ("call_id", "caller", "callee", "direction", "status", "metrics"):
        assert call[key] == expected[key], key
    assert call["turns"] == end["metrics"]["turns"]  # Patter's push carries them only there; its store keeps []
    assert expected["turns"] == []
    assert server.get("/api/dashboard/aggregates").json() == patter.get("/api/dashboard/aggregates").json()

    # Export: Patter's columns and cells (text cells neutralised), and the JSON is the list's records.
    exported = server.get("/api/dashboard/export/calls?format=csv")
    reference = patter.get("/api/dashboard/export/calls?format=csv")
    assert exported.status_code == reference.status_code == 200
    assert exported.headers["Content-Disposition"] == reference.headers["content-disposition"] == "attachment; filename=patter_calls.csv"
    assert exported.headers["Content-Type"] == reference.headers["content-type"] == "text/csv; charset=utf-8"
    ours_rows = list(csv.DictReader(io.StringIO(exported.text)))
    (theirs_row,) = csv.DictReader(io.StringIO(reference.text))
    assert exported.text.split("\r\n", 1)[0] == reference.text.split("\r\n", 1)[0]
    (row,) = ours_rows
    for column, value in theirs_row.items():
        if column in ("started_at", "ended_at"):
            continue  # Patter stamps its own arrival times
        assert row[column] == (safe_cell(value) if column in TEXT_COLUMNS else value), column
    assert row["caller"] == "'" + end["caller"] and theirs_row["caller"] == end["caller"]  # +1555... is no formula here
    assert float(row["ended_at"]) == end["ended_at"]
    as_json = server.get("/api/dashboard/export/calls")
    assert as_json.headers["Content-Disposition"] == "attachment; filename=patter_calls.json"
    assert as_json.json() == [call]
    assert server.get("/api/dashboard/export/calls?format=xml").json() == [call]  # anything but csv is JSON, as in Patter


def test_a_call_closed_without_call_end_or_without_metrics_reads_as_in_patter(live_server: Any) -> None:
    server = live_server()
    patter = Patter()
    # Closed by a terminal status (Patter's update_call_status): metrics null.
    patter.store.record_call_start({"call_id": "CA-busy", "caller": "+15550001", "callee": "+15550002"})
    patter.store.update_call_status("CA-busy", "busy")
    server.post_events([{"type": "call_start", "data": {"call_id": "CA-busy", "caller": "+15550001", "callee": "+15550002"}},
                        {"type": "call_status", "data": {"call_id": "CA-busy", "status": "busy"}}])
    # Ended without CallMetrics: Patter's stand-in metrics.
    bare = {"call_id": "CA-bare", "caller": "+15550003", "callee": "+15550004", "direction": "outbound", "ended_at": time.time()}
    patter.notify(bare)
    push(server, bare)
    ours = {c["call_id"]: c for c in server.get("/api/dashboard/calls").json()}
    theirs = {c["call_id"]: c for c in patter.get("/api/dashboard/calls").json()}
    assert list(ours) == list(theirs) == ["CA-bare", "CA-busy"]
    same_keys(ours["CA-busy"], theirs["CA-busy"], also={"transcript", "turns"})  # Patter adds them when not empty
    assert ours["CA-busy"]["metrics"] is theirs["CA-busy"]["metrics"] is None
    assert ours["CA-busy"]["status"] == theirs["CA-busy"]["status"] == "busy"
    same_keys(ours["CA-bare"], theirs["CA-bare"])
    metrics, expected = ours["CA-bare"]["metrics"], theirs["CA-bare"]["metrics"]
    assert set(metrics) == set(expected)
    for key in set(expected) - {"duration_seconds"}:
        assert metrics[key] == expected[key], key
    assert server.get("/api/dashboard/aggregates").json()["total_calls"] == patter.get("/api/dashboard/aggregates").json()["total_calls"] == 2
    rows = {r["call_id"]: r for r in csv.DictReader(io.StringIO(server.get("/api/dashboard/export/calls?format=csv").text))}
    expected_rows = {r["call_id"]: r for r in csv.DictReader(io.StringIO(calls_to_csv(patter.get("/api/dashboard/calls").json())))}
    for column in ("cost_total", "avg_latency_ms", "turns_count", "provider_mode"):
        assert rows["CA-busy"][column] == expected_rows["CA-busy"][column], column  # empty, and 0 turns
        assert rows["CA-bare"][column] == expected_rows["CA-bare"][column], column


# ----------------------------------------------------------------- reading


def test_list_parameters_are_read_as_patter_reads_them(live_server: Any) -> None:
    server = live_server()
    patter = Patter()
    for i in range(5):
        body = notified("sdk_notify_call_end.json", f"CA-{i}")
        patter.notify(body)
        push(server, body)
    for query in ("", "?limit=2", "?limit=2&offset=2", "?offset=4", "?offset=9", "?limit=abc", "?limit=-3", "?limit=0",
                  "?limit=5000", "?offset=-1", "?offset=x", "?limit=", "?limit=%201", "?limit=3.5", "?offset=" + "9" * 30):
        ours, theirs = server.get(f"/api/dashboard/calls{query}"), patter.get(f"/api/dashboard/calls{query}")
        assert ours.status_code == theirs.status_code == 200, query
        assert [c["call_id"] for c in ours.json()] == [c["call_id"] for c in theirs.json()], query
    assert [c["call_id"] for c in server.get("/api/dashboard/calls").json()] == ["CA-4", "CA-3", "CA-2", "CA-1", "CA-0"]


def test_export_ranges_order_and_formulas_as_in_patter(live_server: Any) -> None:
    server = live_server()
    patter = Patter()
    starts = {"S1": "2026-01-10T00:00:00+00:00", "S2": "2026-01-11T00:00:00+00:00", "S3": "2026-01-12T12:00:00+00:00"}
    for call_id in ("S2", "S3", "S1"):  # finished in another order than they started
        started = datetime.fromisoformat(starts[call_id]).timestamp()
        body = {"call_id": call_id, "caller": "+15551234567", "callee": "=HYPERLINK(\"http://x\")", "direction": "inbound",
                "started_at": started, "ended_at": started + 60}
        patter.notify(body)
        push(server, body)
    for query in ("", "?from=2026-01-11", "?to=2026-01-11", "?from=2026-01-11&to=2026-01-11", "?from=2026-01-11T00:00:00Z",
                  "?from=2026-01-10T12:00:00&to=2026-01-12T12:00:00", "?from=yesterday", "?to=2026-13-01", "?from=2026-01-13",
                  "?to=2026-01-09"):
        ours = server.get(f"/api/dashboard/export/calls{query}")
        theirs = patter.get(f"/api/dashboard/export/calls{query}")
        assert ours.status_code == theirs.status_code == 200, query
        assert [c["call_id"] for c in ours.json()] == [c["call_id"] for c in theirs.json()], query
    assert [c["call_id"] for c in server.get("/api/dashboard/export/calls").json()] == ["S1", "S3", "S2"]  # newest first
    assert [c["call_id"] for c in server.get("/api/dashboard/export/calls?from=2026-01-11").json()] == ["S2", "S3"]  # as finished
    assert [c["call_id"] for c in server.get("/api/dashboard/export/calls?to=2026-01-11").json()] == ["S2", "S1"]  # inclusive
    ours = list(csv.reader(io.StringIO(server.get("/api/dashboard/export/calls?format=csv&from=2026-01-12").text)))
    theirs = list(csv.reader(io.StringIO(patter.get("/api/dashboard/export/calls?format=csv&from=2026-01-12").text)))
    assert ours[0] == theirs[0]
    assert ours[1][:5] == [theirs[1][0], "'+15551234567", "'=HYPERLINK(\"http://x\")", "inbound", theirs[1][4]]
    assert theirs[1][1:3] == ["+15551234567", "=HYPERLINK(\"http://x\")"]  # Patter writes them raw


# ---------------------------------------------------------------- deleting


def test_deleting_as_in_patter(live_server: Any) -> None:
    server = live_server()
    patter = Patter()
    stream = SSEClient(f"{server.url}/api/dashboard/events")
    assert stream.next_block(time.monotonic() + 5).startswith("retry:")
    for body in (notified("sdk_notify_call_end.json", "CA-A"), notified("sdk_notify_call_end.json", "CA-B"),
                 notified("sdk_notify_call_end.json", "CA-C"), notified("sdk_notify_call_start.json", "CA-LIVE")):
        patter.notify(body)
        push(server, body)
    patter.events()

    def both(method: str, path: str, **kwargs: Any) -> tuple[requests.Response, Any]:
        ours = requests.request(method, server.url + path, timeout=10, **kwargs)
        if "data" in kwargs:  # raw bytes, in the test client's spelling
            kwargs = {("content" if k == "data" else k): v for k, v in kwargs.items()}
        theirs = patter.client.request(method, path, **kwargs)
        return ours, theirs

    def same(method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
        ours, theirs = both(method, path, **kwargs)
        assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json()), (method, path, kwargs)
        assert ours.status_code == status
        assert ours.headers["Content-Type"] == "application/json"
        msgspec.convert(ours.json(), views.PatterDeleted if status == 200 else views.Error, strict=True)  # as documented
        return ours.json()

    assert same("DELETE", "/api/dashboard/calls/CA-A", 200) == {"deleted": ["CA-A"], "count": 1}
    assert same("DELETE", "/api/dashboard/calls/CA-A", 200) == {"deleted": [], "count": 0}  # idempotent
    assert same("DELETE", "/api/dashboard/calls/CA-LIVE", 200) == {"deleted": [], "count": 0}  # a live call stays
    batch = {"call_ids": ["CA-C", "", 7, None, "CA-LIVE", "CA-B", "CA-C", ["CA-B"]]}
    assert same("POST", "/api/dashboard/calls/delete", 200, json=batch) == {"deleted": ["CA-B", "CA-C"], "count": 2}
    assert same("POST", "/api/dashboard/calls/delete", 200, json={"call_ids": []}) == {"deleted": [], "count": 0}
    # Patter reads the body as JSON whatever it is labelled.
    assert same("POST", "/api/dashboard/calls/delete", 200, data='{"call_ids": ["CA-B"]}',
                headers={"Content-Type": "text/plain"}) == {"deleted": [], "count": 0}
    assert same("POST", "/api/dashboard/calls/delete", 200, data=b'{"call_ids": [1e999, {}]}') == {"deleted": [], "count": 0}
    for bad in (b"not json", b"[]", b'{"call_ids": "CA-B"}', b'{"call_ids": {"CA-B": 1}}', b"{}", b"", b"null", b'"CA-B"',
                b"\xff\xfe", b"{" * 10_000):
        assert same("POST", "/api/dashboard/calls/delete", 400, data=bad, headers={"Content-Type": "application/json"}) == {
            "error": "Expected JSON body {'call_ids': [...]}"}
    # NaN is not JSON: refused like any other body that is not (Python's json, under Patter, takes it).
    not_json = requests.post(f"{server.url}/api/dashboard/calls/delete", data=b'{"call_ids": [NaN]}', timeout=10)
    assert not_json.status_code == 400 and not_json.json() == {"error": "Expected JSON body {'call_ids': [...]}"}
    # The one departure: Patter "deletes" an id it never held (and would hide such a call if it came later).
    ours, theirs = both("POST", "/api/dashboard/calls/delete", json={"call_ids": ["never-seen"]})
    assert ours.json() == {"deleted": [], "count": 0} and theirs.json() == {"deleted": ["never-seen"], "count": 1}

    for path in ("/api/dashboard/calls/CA-A", "/api/dashboard/calls/CA-B", "/api/v1/calls/CA-C"):
        assert server.get(path).status_code == 404, path
    assert [c["call_id"] for c in server.get("/api/dashboard/active").json()] == ["CA-LIVE"]
    assert server.get("/api/dashboard/calls").json() == patter.get("/api/dashboard/calls").json() == []
    assert server.get("/api/dashboard/aggregates").json() == patter.get("/api/dashboard/aggregates").json()
    expected = [e for e in patter.events() if e[1].get("call_ids") != ["never-seen"]]
    assert expected == [("calls_deleted", {"call_ids": ["CA-A"]}), ("calls_deleted", {"call_ids": ["CA-B", "CA-C"]})]
    seen = [stream.next_event() for _ in range(6)]  # the four calls' events, then the deletions
    assert [e["event"] for e in seen[:4]] == ["call_end", "call_end", "call_end", "call_start"]
    assert [(e["event"], e["data"]) for e in seen[4:]] == expected
    stream.close()


def test_a_history_that_cannot_be_written_refuses_the_deletion_with_503(app, client, monkeypatch) -> None:
    dash = app.extensions["patter_dash"]

    def down(call_ids: list[str]) -> list[str]:
        raise JournalDown("history cannot be written: disk full")

    client.post("/api/dashboard/ingest", json=notified("sdk_notify_call_end.json", "CA-A"))
    monkeypatch.setattr(dash.pipeline, "delete", down)
    for method, path, body in (("DELETE", "/api/dashboard/calls/CA-A", None), ("POST", "/api/dashboard/calls/delete", {"call_ids": ["CA-A"]})):
        response = client.open(path, method=method, json=body)
        assert response.status_code == 503 and response.headers["Retry-After"] == "1", path
        assert "disk full" in response.get_json()["error"]
    assert [c["call_id"] for c in client.get("/api/dashboard/calls").get_json()] == ["CA-A"]


# ------------------------------------------------------------ auth and HTTP


def test_the_token_rules_are_those_of_api_v1(live_server: Any) -> None:
    server = live_server(PATTER_DASH_TOKEN="s3cret-token")
    push(server, notified("sdk_notify_call_end.json", "CA-A"))  # Patter's tokenless push, from this machine
    bearer = {"Authorization": "Bearer s3cret-token"}
    reads = ("/api/dashboard/calls", "/api/dashboard/calls/CA-A", "/api/dashboard/active", "/api/dashboard/aggregates",
             "/api/dashboard/export/calls?format=csv", "/api/dashboard/export/calls")
    for path in reads:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = requests.get(server.url + path, headers=headers, timeout=10)
            assert refused.status_code == 401 and "error" in refused.json(), path
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert requests.get(server.url + path, headers=bearer, timeout=10).status_code == 200, path
        # Patter's page sends ?token= where it cannot set a header (EventSource, the export link).
        assert requests.get(f"{server.url}{path}{'&' if '?' in path else '?'}token=s3cret-token", timeout=10).status_code == 200
    refused = SSEClient(f"{server.url}/api/dashboard/events")
    assert refused.status == 401
    refused.close()
    for url, headers in ((f"{server.url}/api/dashboard/events", bearer), (f"{server.url}/api/dashboard/events?token=s3cret-token", {})):
        stream = SSEClient(url, headers=headers)
        assert stream.status == 200 and stream.next_block(time.monotonic() + 5).startswith("retry:")
        stream.close()

    deletions = (("DELETE", "/api/dashboard/calls/CA-A", None), ("POST", "/api/dashboard/calls/delete", {"call_ids": ["CA-A"]}))
    for method, path, body in deletions:
        assert requests.request(method, server.url + path, json=body, timeout=10).status_code == 401
        foreign = requests.request(method, server.url + path, json=body, headers={**bearer, **FOREIGN_ORIGIN}, timeout=10)
        assert foreign.status_code == 403 and "Origin" in foreign.json()["error"], path
    assert server.get("/api/dashboard/calls/CA-A").status_code == 200  # nothing was deleted
    same_origin = {**bearer, "Origin": server.origin}
    answer = requests.delete(f"{server.url}/api/dashboard/calls/CA-A", headers=same_origin, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"deleted": ["CA-A"], "count": 1}


def test_a_tokenless_dashboard_refuses_other_sites_deletions(client) -> None:
    client.post("/api/dashboard/ingest", json=notified("sdk_notify_call_end.json", "CA-A"))
    for method, path, body in (("DELETE", "/api/dashboard/calls/CA-A", None), ("POST", "/api/dashboard/calls/delete", {"call_ids": ["CA-A"]})):
        for origin in ("https://evil.example", "null", "http://localhost.evil.example"):
            refused = client.open(path, method=method, json=body, headers={"Origin": origin})
            assert refused.status_code == 403, (path, origin)
    assert client.get("/api/dashboard/calls/CA-A").status_code == 200
    assert client.delete("/api/dashboard/calls/CA-A", headers={"Origin": "http://localhost"}).get_json()["count"] == 1


def test_unknown_paths_and_wrong_methods_answer_json(client) -> None:
    for path, method, allowed in (
        ("/api/dashboard/calls", "PUT", "GET, HEAD, OPTIONS"),
        ("/api/dashboard/calls/x", "POST", "DELETE, GET, HEAD, OPTIONS"),
        ("/api/dashboard/calls/delete", "PUT", "DELETE, GET, HEAD, OPTIONS, POST"),  # also the call named "delete"
        ("/api/dashboard/active", "DELETE", "GET, HEAD, OPTIONS"),
        ("/api/dashboard/events", "POST", "GET, HEAD, OPTIONS"),
        ("/api/dashboard/ingest", "GET", "OPTIONS, POST"),
    ):
        response = client.open(path, method=method)
        assert response.status_code == 405 and response.headers["Allow"] == allowed, (path, method)
        assert "error" in response.get_json()
    missing = client.get("/api/dashboard/nope")
    assert missing.status_code == 404 and missing.get_json() == {"error": "no API route /api/dashboard/nope"}
    for bare in ("/api/dashboard", "/api/dashboard/", "/api/v1", "/api/v1/"):  # no route, but still the API's JSON
        for method in ("GET", "POST", "DELETE"):
            response = client.open(bare, method=method)
            assert response.status_code == 404 and response.get_json() == {"error": f"no API route {bare}"}, (bare, method)
    for method in ("TRACE", "PROPFIND", "MOVE"):  # what scanners send: JSON too
        for path in ("/api/v1/calls", "/api/dashboard/calls", "/api/v1/nope"):
            response = client.open(path, method=method)
            assert response.status_code in (404, 405) and "error" in response.get_json(), (path, method)


# ---------------------------------------------------------- the live stream


def test_the_stream_resumes_holds_nothing_for_head_and_frees_a_leaving_client(live_server: Any) -> None:
    server = live_server(PATTER_DASH_MAX_SUBSCRIBERS="3")
    for _ in range(10):
        head = requests.head(f"{server.url}/api/dashboard/events", timeout=5)
        assert head.status_code == 200 and head.headers["Content-Type"].startswith("text/event-stream")
    assert subscribers(server) == 0
    for _ in range(4):  # more rounds than slots: a leak would show
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /api/dashboard/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while b"retry:" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        s.close()
        wait_for(lambda: subscribers(server) == 0, timeout=3)  # the idle stream notices within a second

    stream = SSEClient(f"{server.url}/api/dashboard/events")
    stream.next_block(time.monotonic() + 5)
    *live, end = realtime()
    server.post_events(live[:3])  # call_start and two lines
    first = [stream.next_event() for _ in range(3)]
    assert [e["event"] for e in first] == ["call_start", "transcript_line", "transcript_line"]
    stream.close()
    wait_for(lambda: subscribers(server) == 0, timeout=4)
    server.post_events(live[3:] + [end])
    # Reconnect as EventSource does: exactly what was missed, Patter's names, tool lines left out.
    resumed = SSEClient(f"{server.url}/api/dashboard/events", headers={"Last-Event-ID": str(first[-1]["id"])})
    names = [resumed.next_event()["event"] for _ in range(5)]
    assert names == ["turn_complete", "transcript_line", "turn_complete", "transcript_line", "call_end"]
    resumed.close()
    wait_for(lambda: subscribers(server) == 0, timeout=3)
    # A Last-Event-ID Patter never sent is no error (Patter reads none): the stream starts live.
    for bad in ("abc", "-1", "1" * 40):
        stream = SSEClient(f"{server.url}/api/dashboard/events", headers={"Last-Event-ID": bad})
        assert stream.status == 200 and stream.next_block(time.monotonic() + 5).startswith("retry:")
        stream.close()
        wait_for(lambda: subscribers(server) == 0, timeout=3)
    # One call's events only.
    only = SSEClient(f"{server.url}/api/dashboard/events?call_id=CA-other")
    assert only.next_block(time.monotonic() + 5).startswith("retry:")
    server.post_events([{"type": "call_start", "data": {"call_id": "CA-mine"}}, {"type": "call_start", "data": {"call_id": "CA-other"}}])
    assert only.next_event()["data"] == {"call_id": "CA-other", "caller": "", "callee": "", "direction": "inbound"}
    only.close()
    wait_for(lambda: subscribers(server) == 0, timeout=4)


def test_an_export_holds_its_snapshot_only_while_its_client_reads(live_server: Any) -> None:
    server = live_server()
    end = payload("call_end.json")
    for start in range(0, 1200, 50):  # 50 calls a body: within the 1 MiB body limit
        server.post_events([{"type": "call_end", "data": {**end, "call_id": f"X{i:04d}"}} for i in range(start, start + 50)])
    for path in ("/api/dashboard/export/calls", "/api/dashboard/export/calls?format=csv"):
        assert requests.head(server.url + path, timeout=5).status_code == 200
        assert server.get("/api/v1/health").json()["export"]["open"] == 0  # HEAD takes no snapshot
        stuck = raw_request(server, path, rcvbuf=4096)  # a client that stops reading
        read_some(stuck, 1)
        wait_for(lambda: server.get("/api/v1/health").json()["export"]["open"] == 1, timeout=5)
        hard_close(stuck)
        assert settled(server) < 4  # released once it left
    exported = server.get("/api/dashboard/export/calls")
    assert len(exported.content) > 2_000_000 and len(exported.json()) == 1200
    assert len(server.get("/api/dashboard/export/calls?format=csv").text.splitlines()) == 1201


# ------------------------------------------------------------- in process


def test_patter_callbacks_in_process_read_as_in_patter(app, client) -> None:
    dash = app.extensions["patter_dash"]
    callbacks = dash.patter_callbacks()
    patter = Patter()
    names = {"call_start": "on_call_start", "transcript": "on_transcript", "turn": "on_metrics", "call_end": "on_call_end"}
    *live, end = realtime()

    async def feed(envelopes: list[dict[str, Any]]) -> None:
        for envelope in envelopes:
            await callbacks[names[envelope["type"]]](envelope["data"])
            patter.callback(envelope)

    asyncio.run(feed(live))
    wait_for(lambda: (c := dash.store.get(REALTIME)) is not None and len(c.turns) == 2 and len(c.transcript) == 6)
    (call,), (expected,) = client.get("/api/dashboard/active").get_json(), patter.get("/api/dashboard/active").json()
    same_keys(call, expected)
    assert call["turns"] == expected["turns"] and spoken(call["transcript"]) == spoken(expected["transcript"])
    asyncio.run(feed([end]))
    wait_for(lambda: not dash.store.get(REALTIME).active)
    (call,), (expected,) = client.get("/api/dashboard/calls").get_json(), patter.get("/api/dashboard/calls").json()
    same_keys(call, expected)
    assert call["metrics"] == expected["metrics"]
    assert client.get("/api/dashboard/aggregates").get_json() == patter.get("/api/dashboard/aggregates").json()


def test_live_calls_are_bounded_as_in_api_v1(client) -> None:
    template = payload("turn_metrics.json")

    def turn(call_id: str, index: int) -> dict[str, Any]:
        data = json.loads(json.dumps(template))
        data["call_id"] = call_id
        data["turn"].update(turn_index=index, user_text=f"question {index}", agent_text="answer")
        return {"type": "turn", "data": data}

    body = {"events": [{"type": "call_start", "data": {"call_id": "long"}}] + [turn("long", i) for i in range(150)]}
    assert client.post("/api/v1/ingest", json=body).status_code == 202
    (call,) = client.get("/api/dashboard/active").get_json()
    assert [t["turn_index"] for t in call["turns"]] == list(range(50, 150))  # the newest 100, oldest first
    assert len(call["transcript"]) == 200  # the newest lines, as /api/v1/calls/active
    whole = client.get("/api/dashboard/calls/long").get_json()
    assert len(whole["turns"]) == 150 and len(whole["transcript"]) == 300  # the detail is whole, as Patter's
    for i in range(99):
        client.post("/api/v1/ingest", json={"type": "call_start", "data": {"call_id": f"more-{i:02d}"}})
    page = client.get("/api/dashboard/active").get_json()
    assert len(page) == 100 and page[0]["call_id"] == "long"  # every live call, in the order first seen
    assert len(page[0]["turns"]) == 50  # 5,000 turns a page, shared by the calls there are
