"""Annotations (issue 13, "tags and notes"): PATCH /api/v1/calls/{call_id} sets tags, notes and a rating.

Through the Flask test client over memory and a real SQLite file: the body's limits answer 400 naming the
field, writes need the token and a same-site Origin, the change shows in list, detail and both exports, and
the ``tag`` / ``has_notes`` filters select by it (combined with the others, in memory and on disk). Then
through real gunicorn + gevent on a real history file: a live and a finished call keep their annotations
across a clean restart and a ``kill -9``, and SSE readers get ``call_updated``. The browser side is in
test_ui_annotations.py.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from patter_dash.run.app import create_app
from tests.sse import SSEClient
from tests.test_history_delete import NOW, ended, ingest, started, tracebacks

TOKEN = "tok-annotate-0001"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def make_app(**config: Any) -> Flask:
    return create_app({"TESTING": True, **{f"PATTER_DASH_{k.upper()}": v for k, v in config.items()}})


@pytest.fixture(params=["memory", "sqlite"])
def any_client(request: Any, tmp_path: Path) -> Iterator[FlaskClient]:
    config = {} if request.param == "memory" else {"db": str(tmp_path / "history.db"), "max_calls": 2}
    app = make_app(**config)
    yield app.test_client()
    app.extensions["patter_dash"].stop()


def patch(target: Any, call_id: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    if isinstance(target, FlaskClient):
        return target.patch(f"/api/v1/calls/{call_id}", json=body, headers=headers or {})
    return requests.patch(f"{target.url}/api/v1/calls/{call_id}", json=body, headers={**target.headers, **(headers or {})}, timeout=10)


def ids(client: FlaskClient, query: str = "") -> list[str]:
    response = client.get(f"/api/v1/calls?limit=1000{query}")
    assert response.status_code == 200, response.get_json()
    return [c["call_id"] for c in response.get_json()["data"]]


# ------------------------------------------------------------------ the API


def test_a_patch_sets_what_it_names_and_shows_everywhere(any_client: FlaskClient) -> None:
    client = any_client
    ingest(client, [ended("A", NOW - 3600), ended("B", NOW - 1800), ended("C", NOW - 600)])
    fresh = client.get("/api/v1/calls/A").get_json()["data"]
    assert (fresh["tags"], fresh["notes"], fresh["rating"]) == ([], "", None)

    answer = patch(client, "A", {"tags": [" billing ", "escalate", "billing"], "notes": "Caller asked twice.", "rating": 2})
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["Cache-Control"] == "no-store"
    data = answer.get_json()["data"]
    assert (data["call_id"], data["tags"], data["notes"], data["rating"]) == ("A", ["billing", "escalate"], "Caller asked twice.", 2)

    # A field left out stays; null clears the rating, "" the notes, [] the tags.
    assert patch(client, "A", {"rating": 5}).get_json()["data"]["tags"] == ["billing", "escalate"]
    detail = client.get("/api/v1/calls/A").get_json()["data"]
    assert (detail["tags"], detail["notes"], detail["rating"]) == (["billing", "escalate"], "Caller asked twice.", 5)
    row = {c["call_id"]: c for c in client.get("/api/v1/calls").get_json()["data"]}["A"]  # "A" is only on disk with sqlite
    assert (row["tags"], row["notes"], row["rating"]) == (["billing", "escalate"], "Caller asked twice.", 5)
    assert client.get("/api/v1/calls?full=1").get_json()["data"][2]["tags"] == ["billing", "escalate"]

    exported = {c["call_id"]: c for c in client.get("/api/v1/export/json").get_json()}
    assert (exported["A"]["tags"], exported["A"]["rating"]) == (["billing", "escalate"], 5)
    assert exported["B"]["tags"] == [] and exported["B"]["rating"] is None

    patch(client, "B", {"notes": "=HYPERLINK(\"http://evil\")", "tags": ["+1555", "vip"]})
    rows = {r["call_id"]: r for r in csv.DictReader(io.StringIO(client.get("/api/v1/export/csv").get_data(as_text=True)))}
    assert (rows["A"]["tags"], rows["A"]["rating"], rows["A"]["notes"]) == ("billing, escalate", "5", "Caller asked twice.")
    assert rows["B"]["notes"] == "'=HYPERLINK(\"http://evil\")" and rows["B"]["tags"] == "'+1555, vip"  # never run as formulas
    assert (rows["C"]["tags"], rows["C"]["rating"], rows["C"]["notes"]) == ("", "", "")

    cleared = patch(client, "A", {"tags": [], "notes": None, "rating": None}).get_json()["data"]
    assert (cleared["tags"], cleared["notes"], cleared["rating"]) == ([], "", None)
    assert patch(client, "nope", {"rating": 3}).status_code == 404
    assert patch(client, "nope", {"rating": 3}).get_json() == {"error": "Call not found"}
    assert ids(client) == ["C", "B", "A"]  # no call made up, none moved


def test_a_live_call_can_be_annotated_and_keeps_it_when_it_ends(any_client: FlaskClient) -> None:
    client = any_client
    ingest(client, [started("L")])
    assert patch(client, "L", {"tags": ["live"], "rating": 4}).status_code == 200
    active = client.get("/api/v1/calls/active").get_json()["data"][0]
    assert (active["call_id"], active["tags"], active["rating"]) == ("L", ["live"], 4)
    ingest(client, [ended("L", NOW - 60)])
    detail = client.get("/api/v1/calls/L").get_json()["data"]
    assert (detail["status"], detail["tags"], detail["rating"]) == ("completed", ["live"], 4)


@pytest.mark.parametrize(("body", "field"), [
    ({}, "body"),
    ([], "body"),
    ("tags", "body"),
    ({"tags": ["a"], "colour": "red"}, "colour"),
    ({"tags": "vip"}, "tags"),
    ({"tags": [f"t{i}" for i in range(11)]}, "tags"),
    ({"tags": ["x" * 33]}, "tags[0]"),
    ({"tags": ["ok", "   "]}, "tags[1]"),
    ({"tags": ["ok", 7]}, "tags[1]"),
    ({"tags": ["new\nline"]}, "tags[0]"),
    ({"tags": ["bell\x07"]}, "tags[0]"),
    ({"tags": ["evil\u202egnp.exe"]}, "tags[0]"),  # a bidi override would show another name
    ({"tags": ["zero\u200bwidth"]}, "tags[0]"),
    ({"tags": ["a,b"]}, "tags[0]"),
    ({"notes": "x" * 2001}, "notes"),
    ({"notes": 5}, "notes"),
    ({"rating": 0}, "rating"),
    ({"rating": 6}, "rating"),
    ({"rating": 4.5}, "rating"),
    ({"rating": True}, "rating"),
    ({"rating": "5"}, "rating"),
])
def test_bad_bodies_answer_400_naming_the_field(client: FlaskClient, body: Any, field: str) -> None:
    ingest(client, [ended("V", NOW - 60)])
    response = patch(client, "V", body)
    assert (response.status_code, response.mimetype) == (400, "application/json"), response.get_json()
    answer = response.get_json()
    assert answer["error"] and answer["details"][0]["field"] == field, answer
    detail = client.get("/api/v1/calls/V").get_json()["data"]
    assert (detail["tags"], detail["notes"], detail["rating"]) == ([], "", None)  # nothing of it applied


def test_bodies_that_are_not_json_objects_are_refused(client: FlaskClient) -> None:
    ingest(client, [ended("V", NOW - 60)])
    for data, content_type, status in (
        ("{", "application/json", 400),
        ('{"rating": NaN}', "application/json", 400),
        ('{"rating": 3}', "text/plain", 415),
        ("", "application/json", 400),
        ('{"notes": "' + "x" * 40_000 + '"}', "application/json", 413),
    ):
        response = client.patch("/api/v1/calls/V", data=data, content_type=content_type)
        assert (response.status_code, response.mimetype) == (status, "application/json"), (data[:20], response.get_json())
        assert "error" in response.get_json()
    # At the limits exactly: accepted, and text is cleaned as transcript text is (NUL dropped).
    ok = patch(client, "V", {"tags": [f"{i:02d}" + "t" * 30 for i in range(10)], "notes": "n\x00" * 1000 + "n" * 1000})
    assert ok.status_code == 200 and ok.get_json()["data"]["notes"] == "n" * 2000
    unicode = patch(client, "V", {"tags": ["café", "cafe\u0301", "日本語"]}).get_json()["data"]["tags"]
    assert unicode == ["café", "日本語"]  # NFC: one tag, however it was typed


def test_writes_need_the_token_and_a_same_site_origin() -> None:
    app = make_app(token=TOKEN)
    secured = app.test_client()
    try:
        ingest(secured, [ended("S", NOW - 60)], BEARER)
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = patch(secured, "S", {"rating": 1}, headers)
            assert (response.status_code, response.mimetype) == (401, "application/json")
        # A token in the URL opens reads, never writes.
        assert secured.patch(f"/api/v1/calls/S?token={TOKEN}", json={"rating": 1}).status_code == 401
        refused = patch(secured, "S", {"rating": 1}, {"Origin": "https://evil.example", **BEARER})
        assert refused.status_code == 403 and "Origin" in refused.get_json()["error"]
        assert secured.get("/api/v1/calls/S", headers=BEARER).get_json()["data"]["rating"] is None
        assert patch(secured, "S", {"rating": 1}, BEARER).status_code == 200
    finally:
        app.extensions["patter_dash"].stop()


# ------------------------------------------------------------------ filters


def test_tag_and_has_notes_filter_list_export_and_combine(any_client: FlaskClient) -> None:
    client = any_client
    ingest(client, [ended(f"F{i}", NOW - 3600 * (6 - i)) for i in range(6)] + [ended("OUT", NOW - 30)])
    patch(client, "F0", {"tags": ["vip", "billing"], "notes": "old"})
    patch(client, "F2", {"tags": ["vip"]})
    patch(client, "F3", {"tags": ["VIP", "vipx"], "notes": "case and prefix are other tags"})
    patch(client, "F4", {"notes": "   only notes"})
    patch(client, "OUT", {"tags": ["vip"]})

    assert ids(client, "&tag=vip") == ["OUT", "F2", "F0"]
    assert ids(client, "&tag=VIP") == ["F3"]
    assert ids(client, "&tag=vi") == []  # a whole tag, never part of one
    assert ids(client, "&has_notes=1") == ["F4", "F3", "F0"]
    assert ids(client, "&has_notes=false") == ["OUT", "F5", "F2", "F1"]
    assert ids(client, "&tag=vip&has_notes=true") == ["F0"]
    assert ids(client, f"&tag=vip&from={NOW - 4.5 * 3600}") == ["OUT", "F2"]
    assert ids(client, "&tag=vip&q=F2") == ["F2"]
    paged = client.get("/api/v1/calls?tag=vip&limit=1&offset=1").get_json()
    assert [c["call_id"] for c in paged["data"]] == ["F2"] and paged["pagination"]["total"] == 3

    exported = client.get("/api/v1/export/json?tag=vip&has_notes=0").get_json()
    assert [c["call_id"] for c in exported] == ["OUT", "F2"]
    rows = list(csv.DictReader(io.StringIO(client.get("/api/v1/export/csv?has_notes=1").get_data(as_text=True))))
    assert [r["call_id"] for r in rows] == ["F4", "F3", "F0"]
    assert [r["tags"] for r in rows] == ["", "VIP, vipx", "vip, billing"]

    for query, name in (("tag=" + "x" * 33, "tag"), ("has_notes=maybe", "has_notes")):
        response = client.get(f"/api/v1/calls?{query}")
        assert response.status_code == 400 and name in response.get_json()["error"]


# ------------------------------------------------------- gunicorn, restarts, SSE


def test_annotations_survive_restart_and_kill_9_and_are_announced(live_server: Any, tmp_path: Path) -> None:
    server = live_server(PATTER_DASH_TOKEN=TOKEN, PATTER_DASH_MAX_CALLS="3")
    db = tmp_path / "data" / "history.db"
    server.post_events([ended(f"H{i}", NOW - 3600 * (10 - i)) for i in range(8)] + [started("LIVE")])
    stream = SSEClient(f"{server.url}/api/v1/events?types=call_updated", headers=server.headers)
    stream.next_block()  # retry:

    assert patch(server, "H0", {"tags": ["old", "vip"], "notes": "only on disk"}).status_code == 200  # memory holds H5-H7
    assert patch(server, "H6", {"rating": 3}).status_code == 200
    assert patch(server, "LIVE", {"tags": ["live"], "notes": "still talking", "rating": 5}).status_code == 200
    frames = [stream.next_event() for _ in range(3)]
    assert [f["event"] for f in frames] == ["call_updated"] * 3
    assert [f["data"]["call_id"] for f in frames] == ["H0", "H6", "LIVE"]
    assert frames[0]["data"]["call"]["tags"] == ["old", "vip"] and frames[0]["data"]["call"]["notes"] == "only on disk"
    assert frames[2]["data"]["call"]["rating"] == 5 and frames[2]["data"]["call"]["status"] == "in-progress"
    assert frames[1]["id"] < frames[2]["id"] and frames[2]["data"]["seq"] == frames[2]["id"]
    # The same change again changes nothing and announces nothing.
    assert patch(server, "H6", {"rating": 3}).status_code == 200
    patch(server, "H7", {"rating": 1})
    assert stream.next_event()["data"]["call_id"] == "H7"
    stream.close()

    def seen() -> dict[str, Any]:
        calls = {c["call_id"]: (c["tags"], c["notes"], c["rating"]) for c in server.get("/api/v1/calls?limit=100").json()["data"]}
        live = {c["call_id"]: (c["tags"], c["notes"], c["rating"]) for c in server.get("/api/v1/calls/active").json()["data"]}
        return {**calls, **live, "vip": [c["call_id"] for c in server.get("/api/v1/calls?tag=vip").json()["data"]]}

    before = seen()
    assert before["H0"] == (["old", "vip"], "only on disk", None) and before["LIVE"] == (["live"], "still talking", 5)
    assert before["vip"] == ["H0"]
    server.kill()  # kill -9: an answered change is on disk (the live call's as an event)
    server.start()
    assert seen() == before
    server.stop()  # SIGTERM: the file is folded (snapshots written, events gone)
    server.start()
    assert seen() == before
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = dict(conn.execute("SELECT call_id, tags FROM calls WHERE tags != ''").fetchall())
    assert rows == {"H0": "\x1fold\x1fvip\x1f"}

    # The live call ends: its annotations are in its finished record, and stay.
    server.post_events([ended("LIVE", NOW - 120)])
    assert server.get("/api/v1/calls/LIVE").json()["data"]["tags"] == ["live"]
    server.stop()
    server.start()
    detail = server.get("/api/v1/calls/LIVE").json()["data"]
    assert (detail["status"], detail["tags"], detail["notes"], detail["rating"]) == ("completed", ["live"], "still talking", 5)
    assert not tracebacks(server.logs()), server.logs()[-3000:]
