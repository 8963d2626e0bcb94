"""Durable history against bad disks and bad files: full, read-only, corrupt, too new, foreign, old schema.

Real gunicorn + gevent, real SQLite files on real file systems: a small tmpfs
that fills up, one remounted read-only, files and directories without write
permission (the server then runs as root without CAP_DAC_OVERRIDE, so
permissions really apply to it), and files that are not a usable history.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket  # websocket-client

from patter_dash.journal.sqlite import APPLICATION_ID, SCHEMA_VERSION
from tests.conftest import ROOT, LiveServer, wait_for
from tests.mounts import fill, remount, tmpfs
from tests.test_history_crash import keyed_call

#: The shipped gunicorn config plus a route through which the voice runtime's
#: own OS thread calls ``feed()``, timing each call.
FEED_PLUGIN = '''
from patter_dash.run.server import SETTINGS, on_starting, worker_exit
from patter_dash.run.server import post_worker_init as shipped_post_worker_init

globals().update(SETTINGS)


def post_worker_init(worker):
    shipped_post_worker_init(worker)
    import time
    from flask import jsonify, request
    from gevent import get_hub

    app = worker.wsgi
    dash = app.extensions["patter_dash"]

    def feed():
        events = request.get_json()["events"]

        def runtime():
            results, worst = [], 0.0
            for event in events:
                t0 = time.perf_counter()
                results.append(dash.feed(event["type"], event["data"], id=event.get("id")))
                worst = max(worst, time.perf_counter() - t0)
            return results, worst

        results, worst = get_hub().threadpool.apply(runtime)  # a native thread, as Patter's runtime is
        return jsonify(results=results, worst_ms=worst * 1000)

    app.add_url_rule("/test-only/feed", "test_only_feed", feed, methods=["POST"])
'''

#: Root without the capabilities that bypass file permissions: chmod applies to the server.
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def feeding_server(live_server, tmp_path: Path, launcher: list[str] | None = None, **config: Any) -> LiveServer:
    conf = tmp_path / "gunicorn-feed.conf.py"
    conf.write_text(FEED_PLUGIN)
    return live_server(["-c", str(conf)], launcher=launcher, **config)


def fed_calls(prefix: str, n: int) -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        call_id = f"{prefix}-{i:03d}"
        events.append({"type": "call_start", "id": f"{call_id}/start", "data": {"call_id": call_id, "caller": "+15550000001"}})
        events.append({"type": "call_end", "id": f"{call_id}/end", "data": {"call_id": call_id, "metrics": {
            "duration_seconds": 10.0, "cost": {"total": 0.02}}}})
    return events


def feed(server: LiveServer, events: list[dict[str, Any]]) -> list[bool]:
    answer = requests.post(f"{server.origin}/test-only/feed", json={"events": events}, timeout=30).json()
    assert answer["worst_ms"] < 50, f"feed() blocked for {answer['worst_ms']:.1f} ms"
    return answer["results"]


def health(server: LiveServer) -> dict[str, Any]:
    return server.get("/api/v1/health").json()


def refused_everywhere(server: LiveServer, cause: str) -> None:
    """Ingest over HTTP, Patter's path and the WebSocket is refused with 503 / a retry reply naming ``cause``."""
    for path, body in (("/api/v1/ingest", {"type": "call_start", "data": {"call_id": "REFUSED"}}),
                       ("/api/dashboard/ingest", {"call_id": "REFUSED"})):
        response = requests.post(f"{server.url}{path}", json=body, timeout=10)
        assert response.status_code == 503, (path, response.status_code, response.text)
        assert response.headers["Retry-After"] == "1" and response.headers["Content-Type"] == "application/json"
        assert cause in response.json()["error"], response.json()
    ws = websocket.create_connection(server.url.replace("http://", "ws://") + "/api/v1/ingest/ws", timeout=10)
    try:
        ws.send(json.dumps({"type": "call_start", "data": {"call_id": "REFUSED"}}))
        reply = json.loads(ws.recv())
    finally:
        ws.close()
    assert reply["ok"] is False and reply["retry"] is True and cause in reply["error"], reply
    assert server.get("/api/v1/calls/REFUSED").status_code == 404


def reads(server: LiveServer) -> dict[str, Any]:
    """What a user reads of history; every answer must be 200."""
    seen: dict[str, Any] = {}
    for path in ("/api/v1/calls?limit=1000", "/api/v1/analytics/overview", "/api/v1/analytics/costs?bucket=hour",
                 "/api/v1/calls/KEEP-0003", "/api/v1/export/csv", "/api/v1/export/json"):
        response = server.get(path)
        assert response.status_code == 200, (path, response.text)
        seen[path] = response.text if path.endswith("csv") else response.json()
    return seen


def assert_acknowledged(server: LiveServer, events: list[dict[str, Any]]) -> None:
    """Each acknowledged (or fed and queued) event is served: its call exists and its line is there once."""
    calls: dict[str, dict[str, Any]] = {}
    for event in events:
        call_id = event["data"]["call_id"]
        if call_id not in calls:
            response = server.get(f"/api/v1/calls/{call_id}")
            assert response.status_code == 200, f"acknowledged call {call_id} is missing"
            calls[call_id] = response.json()["data"]
        detail = calls[call_id]
        if event["type"] == "transcript":
            assert [line["text"] for line in detail["transcript"]].count(event["data"]["text"]) == 1
        if event["type"] == "call_end":
            assert detail["status"] == "completed"


# ---------------------------------------------------------------- disk full


def test_disk_full_refuses_ingest_loses_nothing_and_resumes_by_itself(live_server, tmp_path: Path):
    with tmpfs(tmp_path / "small", "4m") as disk:
        config = {"PATTER_DASH_DATA_DIR": str(disk), "PATTER_DASH_QUEUE_SIZE": "300"}
        server = feeding_server(live_server, tmp_path, **config)
        acked: list[dict[str, Any]] = []
        for n in range(10):
            calls = keyed_call("KEEP", n)
            server.post_events(calls)
            acked += calls
        filler = fill(disk)

        # Ingest goes on until the journal needs a block the disk does not have.
        refusal = None
        for n in range(3_000):
            event = {"type": "transcript", "id": f"BIG/{n}", "data": {
                "call_id": f"BIG-{n // 20:03d}", "role": "user", "text": f"line {n} " + "x" * 3_000}}
            response = requests.post(f"{server.url}/api/v1/ingest", json=event, timeout=10)
            if response.status_code == 503:
                refusal = response
                break
            assert response.status_code == 202, response.text
            acked.append(event)
        assert refusal is not None, "the disk never filled up"
        assert refusal.headers["Retry-After"] == "1"
        assert "history cannot be written: the disk holding" in refusal.json()["error"] and "is full" in refusal.json()["error"]
        state = health(server)
        assert state["status"] == "degraded" and state["history"]["status"] == "degraded"
        assert "is full" in state["history"]["error"] and str(disk / "history.db") in state["history"]["error"]
        refused_everywhere(server, "is full")

        # Reading never needed the disk to have room.
        seen = reads(server)
        assert seen["/api/v1/analytics/overview"]["data"]["total_calls"] == 10
        assert_acknowledged(server, acked)

        # The runtime's feed() queues, then drops and counts, and never blocks.
        dropped = state["events"]["dropped"]
        fed = fed_calls("FED", 200)
        results = feed(server, fed)
        queued = [event for event, ok in zip(fed, results) if ok]
        assert 300 <= len(queued) < len(fed)
        state = health(server)
        assert state["events"]["dropped"] - dropped == len(fed) - len(queued)
        assert state["history"]["lag"] == len(queued) and state["status"] == "degraded"
        assert server.get(f"/api/v1/calls/{queued[0]['data']['call_id']}").status_code == 404  # not applied before written

        # Space comes back: nobody restarts anything.
        filler.unlink()
        wait_for(lambda: health(server)["status"] == "ok", timeout=10, interval=0.1)
        state = health(server)
        assert state["history"]["lag"] == 0 and state["history"]["error"] is None
        assert_acknowledged(server, acked + queued)
        lost = {e["data"]["call_id"] for e, ok in zip(fed, results) if not ok} - {e["data"]["call_id"] for e in queued}
        assert all(server.get(f"/api/v1/calls/{call_id}").status_code == 404 for call_id in lost)
        late = keyed_call("AFTER", 0)
        server.post_events(late)

        # All of it on disk: a crash now costs nothing.
        server.kill()
        again = live_server(**config)
        assert_acknowledged(again, acked + queued + late)
        assert health(again)["history"]["status"] == "ok"


# ----------------------------------------------------------------- read-only


def _chmod_all(directory: Path, mode: int) -> None:
    for path in directory.glob("history.db*"):
        os.chmod(path, mode)


READ_ONLY = {
    # how the history became read-only: (make it so, undo it, what the error says, launcher)
    "file-system": (lambda vol, d: remount(vol, "ro"), lambda vol, d: remount(vol, "rw"),
                    "is on a read-only file system", None),
    "file-mode": (lambda vol, d: _chmod_all(d, 0o444), lambda vol, d: _chmod_all(d, 0o644),
                  "history.db is read-only (no write permission)", NO_DAC),
    "directory-mode": (lambda vol, d: os.chmod(d, 0o555), lambda vol, d: os.chmod(d, 0o755),
                       "cannot be written (SQLite needs to create history.db-wal there)", NO_DAC),
}


@pytest.mark.parametrize("how", list(READ_ONLY))
def test_read_only_history_is_served_ingest_refused_and_writing_resumes(live_server, tmp_path: Path, how: str):
    make, undo, cause, launcher = READ_ONLY[how]
    with tmpfs(tmp_path / "vol", "16m") as vol:
        directory = vol / "db"
        directory.mkdir()
        config = {"PATTER_DASH_DB": str(directory / "history.db"), "PATTER_DASH_QUEUE_SIZE": "100"}
        first = live_server(**config)
        acked = [event for n in range(12) for event in keyed_call("KEEP", n)]
        first.post_events(acked)
        before = reads(first)
        first.stop()
        assert not (directory / "history.db-wal").exists(), "a clean stop leaves one file"
        make(vol, directory)

        server = feeding_server(live_server, tmp_path, launcher=launcher, **config)
        state = health(server)
        assert state["status"] == "degraded" and cause in state["history"]["error"], state["history"]
        assert reads(server) == before
        refused_everywhere(server, cause)
        fed = fed_calls("FED", 60)
        results = feed(server, fed)
        queued = [event for event, ok in zip(fed, results) if ok]
        assert 100 <= len(queued) < len(fed) and health(server)["events"]["dropped"] == len(fed) - len(queued)

        undo(vol, directory)
        wait_for(lambda: health(server)["status"] == "ok", timeout=10, interval=0.1)
        assert health(server)["history"]["lag"] == 0
        late = keyed_call("AFTER", 0)
        server.post_events(late)
        assert_acknowledged(server, acked + queued + late)
        server.kill()
        again = live_server(**config)
        assert_acknowledged(again, acked + queued + late)


# ---------------------------------------------------- files that must not be used


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _history_file(path: Path, calls: int = 300) -> None:
    """A real history written by the journal, folded and closed."""
    from patter_dash.core.pipeline import Pipeline
    from patter_dash.journal import open_journal

    journal = open_journal(str(path))
    assert journal is not None
    journal.check()
    pipeline = Pipeline(journal=journal)
    pipeline.ensure_started()
    for n in range(calls):
        for event in keyed_call("OLD", n):
            pipeline.feed(event["type"], event["data"], id=event["id"])
    wait_for(lambda: pipeline.counters["accepted"] >= calls * 6, timeout=30)
    pipeline.stop()


def _make_unusable(kind: str, path: Path) -> None:
    if kind == "garbage":
        path.write_bytes(random.Random(7).randbytes(64 * 1024))
    elif kind == "newer":
        _history_file(path, calls=3)
        db = sqlite3.connect(path)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
        db.close()
    elif kind == "foreign":
        db = sqlite3.connect(path)  # someone's own database, in the default (rollback) journal mode
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        db.executemany("INSERT INTO invoices (amount) VALUES (?)", [(n * 1.5,) for n in range(100)])
        db.commit()
        db.close()
    elif kind == "damaged":  # a real history whose header survived but whose pages did not
        _history_file(path)
        data = bytearray(path.read_bytes())
        page = 4096
        noise = random.Random(11).randbytes(page * 6)
        data[page * 2 : page * 8] = noise
        path.write_bytes(bytes(data))


UNUSABLE = {
    "garbage": ["is not a readable patter-dash database (file is not a database)", "It was left untouched",
                "restore a backup (patter-dash backup) over it, or move it aside"],
    "newer": [f"was written by a newer patter-dash (schema {SCHEMA_VERSION + 5}; this release reads up to {SCHEMA_VERSION})",
              "upgrade patter-dash, or point PATTER_DASH_DB at another file"],
    "foreign": ["is an SQLite database of another application", "Point PATTER_DASH_DB at a new file"],
    "damaged": ["is not a readable patter-dash database (database disk image is malformed)", "move it aside"],
}


@pytest.mark.parametrize("how", ["wal removed", "file replaced"])
def test_a_history_removed_or_replaced_under_the_server_stops_writing_and_says_so(live_server, tmp_path: Path, how: str):
    """Found by a sweep: after ``rm history.db-wal`` (or a copy put over the file) SQLite went on writing
    into the unlinked file, health said ok, and what was acknowledged was gone after the next start."""
    path = tmp_path / "db" / "history.db"
    path.parent.mkdir()
    server = live_server(PATTER_DASH_DB=str(path))
    server.post_events(keyed_call("KEEP", 0))
    if how == "wal removed":
        os.remove(f"{path}-wal")
    else:
        shutil.copy(path, path.parent / "copy.db")
        os.replace(path.parent / "copy.db", path)
    cause = "was removed or replaced while the server ran"
    refused_everywhere(server, cause)
    state = health(server)
    assert state["status"] == "degraded" and cause in state["history"]["error"], state["history"]
    assert server.get("/api/v1/calls/KEEP-0000").status_code == 200  # what memory holds is still served
    server.kill()
    again = live_server(PATTER_DASH_DB=str(path))  # opens what the path holds now
    again.post_events(keyed_call("AFTER", 0))
    assert health(again)["status"] == "ok"


@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_an_unusable_database_stops_the_server_and_is_left_byte_for_byte(tmp_path: Path, kind: str):
    path = tmp_path / "history.db"
    _make_unusable(kind, path)
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{path}{suffix}").exists()
    digest = _digest(path)
    server = LiveServer(tmp_path, {"PATTER_DASH_DB": str(path)}).start(wait=False)
    try:
        code = server.proc.wait(30)
    finally:
        server.kill()
    log = server.logs()
    assert code != 0, log[-2000:]
    for words in UNUSABLE[kind]:
        assert f"{path} " in log and words in log, f"{words!r} not in:\n{log[-3000:]}"
    assert _digest(path) == digest, "the file was changed"
    assert "Listening at" in log and "Worker failed to boot" in log  # refused by the app, not a crash of gunicorn


# ----------------------------------------------------------------- migration

FIXTURE = ROOT / "tests" / "fixtures" / "history-schema-1.db"


def test_a_schema_1_history_migrates_to_the_current_version_with_every_call(live_server, tmp_path: Path):
    """tests/fixtures/history-schema-1.db was written by schema 1 (see make_history_schema_1.py): never regenerate it."""
    path = tmp_path / "history.db"
    shutil.copy(FIXTURE, path)  # read only the copy: even a read-only open of a WAL file makes -wal/-shm beside it
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        pending = {row[0] for row in db.execute("SELECT DISTINCT call_id FROM events")}
        snapshots = {row[0] for row in db.execute("SELECT call_id FROM calls")}
    assert pending == {"V1-CALL-5", "V1-CALL-6"} and snapshots == {f"V1-CALL-{n}" for n in range(1, 5)}
    # The fixture is old: retention and the stale timeout would rightly close and purge it.
    server = live_server(PATTER_DASH_DB=str(path), PATTER_DASH_RETENTION_DAYS="0", PATTER_DASH_CALL_TIMEOUT="0")
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"calls_by_start", "seen_by_seq", "events_by_call", "calls_by_done"} <= indexes

    listed = {c["call_id"]: c for c in server.get("/api/v1/calls?limit=1000").json()["data"]}
    assert set(listed) == {f"V1-CALL-{n}" for n in range(1, 6)}
    for n in range(1, 6):
        detail = server.get(f"/api/v1/calls/V1-CALL-{n}").json()["data"]
        assert detail["status"] == ("failed" if n == 3 else "completed")
        assert detail["caller"] == f"+1555000000{n}"
        assert [line["text"] for line in detail["transcript"]] == [f"call {n} line {i}" for i in range(n)]
        if n != 3:
            assert detail["cost"]["total"] == pytest.approx(0.01 * n) and detail["duration_seconds"] == 30.0 * n
            assert detail["turn_count"] == 1 and detail["metrics"]["provider_mode"] == "pipeline"
    live = server.get("/api/v1/calls/active").json()["data"]
    assert [c["call_id"] for c in live] == ["V1-CALL-6"] and live[0]["transcript"][0]["text"] == "still on the line"
    overview = server.get("/api/v1/analytics/overview").json()["data"]
    assert overview["total_calls"] == 5 and overview["calls_by_status"] == {"completed": 4, "failed": 1}
    assert overview["total_cost"] == pytest.approx(0.01 * (1 + 2 + 4 + 5))
    # Event ids written by schema 1 (in ``seen``, and with the events of a live call) still de-duplicate.
    for key, call_id in (("V1-CALL-4/end", "V1-CALL-4"), ("V1-CALL-6/start", "V1-CALL-6")):
        again = requests.post(f"{server.url}/api/v1/ingest", json={"type": "call_end" if key.endswith("end") else "call_start",
                                                                  "id": key, "data": {"call_id": call_id}}, timeout=10)
        assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    server.kill()
    server = live_server(PATTER_DASH_DB=str(path), PATTER_DASH_RETENTION_DAYS="0", PATTER_DASH_CALL_TIMEOUT="0")
    assert server.get("/api/v1/calls?limit=1000").json()["data"] == list(listed.values())
    # Schema 4: calls written before annotations have none, and can be given some (filtered on disk too).
    assert {tuple(c["tags"]) for c in listed.values()} == {()} and {c["rating"] for c in listed.values()} == {None}
    tagged = requests.patch(f"{server.url}/api/v1/calls/V1-CALL-2", json={"tags": ["migrated"], "notes": "n"}, timeout=10)
    assert tagged.status_code == 200, tagged.text
    assert [c["call_id"] for c in server.get("/api/v1/calls?tag=migrated").json()["data"]] == ["V1-CALL-2"]
    assert [c["call_id"] for c in server.get("/api/v1/calls?has_notes=1").json()["data"]] == ["V1-CALL-2"]
