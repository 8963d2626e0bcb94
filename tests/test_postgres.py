"""The dashboard on PostgreSQL, end to end: real gunicorn + gevent, a real PostgreSQL server (tests/pg.py).

History kept in PostgreSQL reads the same after a clean restart and after a
kill -9; PostgreSQL stopped mid-ingest (immediate shutdown) makes ingest
answer 503 with Retry-After and health say degraded, and once it is back
ingest recovers by itself with every acknowledged event present once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from tests.conftest import LiveServer, wait_for
from tests.test_history_crash import keyed_call
from tests.test_history_faults import assert_acknowledged, health


def _views(server: LiveServer, detail: str = "PG-0003") -> dict[str, Any]:
    """What a user reads of history (every answer a 200); ``detail``: a call whose detail is read."""
    seen: dict[str, Any] = {}
    for path in ("/api/v1/calls?limit=1000", "/api/v1/calls?q=says+line&limit=3&offset=2", "/api/v1/calls?direction=inbound",
                 f"/api/v1/calls/{detail}", "/api/v1/analytics/overview", "/api/v1/analytics/costs?bucket=hour",
                 "/api/v1/export/csv", "/api/v1/export/json"):
        response = server.get(path)
        assert response.status_code == 200, (path, response.text)
        seen[path] = response.text if "export" in path else response.json()
    return seen


def test_history_in_postgres_is_served_deleted_and_kept_across_restarts(live_server, pg_database) -> None:
    url = pg_database()
    # Three calls in memory: the rest of every list, search and export is read from PostgreSQL.
    config = {"PATTER_DASH_DB": url, "PATTER_DASH_MAX_CALLS": "3"}
    server = live_server(**config)
    for n in range(12):
        server.post_events(keyed_call("PG", n))
    state = health(server)["history"]
    assert state["mode"] == "postgres" and state["path"] == url and state["status"] == "ok"

    listed = server.get("/api/v1/calls?limit=100").json()
    assert listed["pagination"]["total"] == 12
    assert [c["call_id"] for c in listed["data"]] == [f"PG-{n:04d}" for n in reversed(range(12))]
    detail = server.get("/api/v1/calls/PG-0001").json()["data"]  # long out of memory: from PostgreSQL
    assert [line["text"] for line in detail["transcript"]] == [f"PG-0001 says line {i}" for i in range(3)]
    assert server.get("/api/v1/analytics/overview").json()["data"]["total_calls"] == 12
    assert server.get("/api/v1/calls?q=pg-0002+%22line+2%22").json()["data"][0]["call_id"] == "PG-0002"
    assert len(server.get("/api/v1/export/csv").text.strip().splitlines()) == 13
    assert requests.delete(f"{server.url}/api/v1/calls/PG-0002", timeout=10).status_code == 200
    assert server.get("/api/v1/calls/PG-0002").status_code == 404
    before = _views(server)
    assert before["/api/v1/analytics/overview"]["data"]["total_calls"] == 11

    server.stop()  # a clean stop, then the same server again
    server.start()
    assert _views(server) == before
    server.post_events(keyed_call("PG", 12))
    after = _views(server)

    server.kill()  # kill -9: what was acknowledged is in PostgreSQL
    server.start()
    assert _views(server) == after
    assert server.get("/api/v1/calls/PG-0002").status_code == 404


class Runtime:
    """A voice runtime's client: one event a request, each sent again after a 503 until acknowledged.

    Call ``n`` goes to ``servers[n % len(servers)]`` (all of a call's events to one process).
    """

    def __init__(self, servers: list[LiveServer], prefix: str = "ING") -> None:
        self.servers, self.prefix = servers, prefix
        self.acked: list[dict[str, Any]] = []
        self.refusals: list[requests.Response] = []
        self.unexpected: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._send()
        except Exception as exc:  # a dropped connection, a timeout: said, not a silent stop
            self.unexpected.append(repr(exc))

    def _send(self) -> None:
        for n in range(10_000):
            server = self.servers[n % len(self.servers)]
            for event in keyed_call(self.prefix, n):
                while not self._stop.is_set():
                    response = requests.post(f"{server.url}/api/v1/ingest", json=event, timeout=10)
                    # 200: a duplicate, stored already (a 503 may come after a commit the answer could not follow)
                    if response.status_code in (200, 202):
                        self.acked.append(event)
                        break
                    if response.status_code != 503:
                        self.unexpected.append(f"{response.status_code} {response.text}")
                        return
                    self.refusals.append(response)
                    time.sleep(0.05)
                if self._stop.is_set():
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)

    def reached(self, count: int) -> bool:
        """Whether ``count`` events are acknowledged; fails at once if the runtime met anything but a 503."""
        assert self.unexpected == []
        return len(self.acked) >= count


def test_postgres_stopped_mid_ingest_refuses_with_503_then_recovers_with_every_acknowledged_event_once(
    live_server, pg_server, pg_database
) -> None:
    url = pg_database()
    server = live_server(PATTER_DASH_DB=url)
    runtime = Runtime([server])
    acked, refusals = runtime.acked, runtime.refusals
    try:
        wait_for(lambda: len(acked) >= 30, timeout=20)
        pg_server.stop("immediate")
        pg_server.wait_down()
        wait_for(lambda: refusals, timeout=20)
        refusal = refusals[0]
        assert refusal.headers["Retry-After"] == "1" and refusal.headers["Content-Type"] == "application/json"
        assert "PATTER_DASH_DB" in refusal.json()["error"] and "PostgreSQL" in refusal.json()["error"]
        state = health(server)
        assert state["status"] == "degraded" and state["history"]["status"] == "degraded"
        assert "PATTER_DASH_DB" in state["history"]["error"]
        stalled = len(acked)
        time.sleep(1.0)
        assert len(acked) == stalled  # nothing acknowledged that is not committed
        assert server.get("/api/v1/calls/ING-0000").status_code == 200  # memory is served
        unknown = server.get("/api/v1/calls/NOT-IN-MEMORY", timeout=20)  # only the database could say
        assert unknown.status_code == 503 and unknown.headers["Retry-After"] == "1", unknown.text
        assert "PATTER_DASH_DB" in unknown.json()["error"]

        pg_server.start()
        wait_for(lambda: health(server)["status"] == "ok", timeout=20, interval=0.1)
        wait_for(lambda: len(acked) >= stalled + 30, timeout=20)
    finally:
        runtime.stop()
    assert runtime.unexpected == []
    assert_acknowledged(server, acked)

    server.kill()  # and all of it is in PostgreSQL, not only in that process's memory
    server.start()
    assert_acknowledged(server, acked)
    assert health(server)["history"]["status"] == "ok"


def test_an_export_needing_the_database_while_it_is_down_is_a_503_not_a_cut_body(live_server, pg_server, pg_database) -> None:
    """Found by a hostile sweep: the export answered 200, streamed memory's calls, then cut the connection
    when it reached the database (a traceback in the log). Its first page from disk is read before the
    answer starts now: refused as /api/v1/calls?q= is, while history older than memory cannot be read."""
    server = live_server(PATTER_DASH_DB=pg_database(), PATTER_DASH_MAX_CALLS="5")
    for n in range(20):
        server.post_events(keyed_call("EXP", n))
    try:
        pg_server.stop("immediate")
        pg_server.wait_down()
        for path in ("/api/v1/export/csv", "/api/v1/export/json", "/api/v1/export/json?format=ndjson"):
            refused = server.get(path, timeout=30)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1", (path, refused.status_code)
            assert "PATTER_DASH_DB" in refused.json()["error"], path
    finally:
        pg_server.start()
    wait_for(lambda: server.get("/api/v1/export/json").status_code == 200, timeout=30, interval=0.2)
    assert len(server.get("/api/v1/export/json").json()) == 20
    assert "failed while streaming" not in server.logs()
