"""Several dashboard processes on one PostgreSQL (issue 17): one ordered log, one live view.

Real gunicorn + gevent servers (one of them ``-w 2``) and a real PostgreSQL
(tests/pg.py): what is ingested on one is served alike by the others (lists,
details, search, analytics, exports), deletions reach every process, a late
server catches up to the same history, an SSE reader moving to another
process resumes exactly with Last-Event-ID, and the jobs that run once move
when the process holding them is killed.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.conftest import LiveServer, wait_for
from tests.sse import SSEClient
from tests.test_history_crash import keyed_call
from tests.test_history_faults import health
from tests.test_postgres import _views


def _total(server: LiveServer) -> int:
    return server.get("/api/v1/analytics/overview").json()["data"]["total_calls"]


def _caught_up(server: LiveServer, views: dict[str, Any]) -> bool:
    """Whether ``server`` (every worker of it: a few reads) serves exactly ``views``."""
    return all(_views(server) == views for _ in range(3))


def test_every_process_serves_the_same_history_deletions_reach_all_and_a_late_one_catches_up(live_server, pg_database) -> None:
    url = pg_database()
    first = live_server(PATTER_DASH_DB=url)
    # Two workers, three calls in memory each: most of every list is read from PostgreSQL there.
    second = live_server(["-w", "2"], PATTER_DASH_DB=url, PATTER_DASH_MAX_CALLS="3")
    for n in range(12):
        (first if n % 2 else second).post_events(keyed_call("PG", n))
    wait_for(lambda: _total(first) == 12 and all(_total(second) == 12 for _ in range(4)), timeout=10)
    views = _views(first)
    assert views["/api/v1/analytics/overview"]["data"]["total_calls"] == 12
    assert [c["call_id"] for c in views["/api/v1/calls?limit=1000"]["data"]] == [f"PG-{n:04d}" for n in reversed(range(12))]
    wait_for(lambda: _caught_up(second, views), timeout=10, interval=0.2)

    # A deletion on one process reaches the others' memory, totals and lists.
    assert requests.delete(f"{second.url}/api/v1/calls/PG-0002", timeout=10).status_code == 200
    wait_for(lambda: first.get("/api/v1/calls/PG-0002").status_code == 404, timeout=5)
    after = _views(first)
    assert after["/api/v1/analytics/overview"]["data"]["total_calls"] == 11
    wait_for(lambda: _caught_up(second, after), timeout=10, interval=0.2)

    late = live_server(PATTER_DASH_DB=url)  # a third process, started after all of it
    assert _views(late) == after
    late.post_events(keyed_call("PG", 12))  # and what it takes, the others show
    wait_for(lambda: first.get("/api/v1/calls/PG-0012").status_code == 200 and _total(first) == 12, timeout=5)
    final = _views(late)
    wait_for(lambda: _caught_up(first, final) and _caught_up(second, final), timeout=10, interval=0.2)
    state = health(first)["history"]
    assert state["mode"] == "postgres" and state["database"] == "ok" and state["log"]["behind"] == 0


def _frames(client: SSEClient, until: int, timeout: float = 10.0) -> list[tuple[int | None, str, str]]:
    """(id, event, call id) of each frame until the one with id ``until``."""
    out: list[tuple[int | None, str, str]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = client.next_event(timeout=max(0.1, deadline - time.monotonic()))
        assert frame is not None, out
        out.append((frame.get("id"), frame["event"], frame["data"].get("call_id", "")))
        if frame.get("id") == until:
            return out


def test_a_live_reader_moving_to_another_process_resumes_exactly_with_last_event_id(live_server, pg_database) -> None:
    url = pg_database()
    first = live_server(PATTER_DASH_DB=url)
    second = live_server(PATTER_DASH_DB=url)
    # The reference reader stays on the first process throughout.
    reference = SSEClient(f"{first.url}/api/v1/events", timeout=15)
    moving = SSEClient(f"{first.url}/api/v1/events", timeout=15)
    try:
        first.post_events(keyed_call("SSE", 0))
        seen: list[tuple[Any, str, str]] = []
        while not seen or seen[-1][1] != "call_end":
            frame = moving.next_event(timeout=5)
            assert frame is not None
            seen.append((frame.get("id"), frame["event"], frame["data"].get("call_id", "")))
        last_id = seen[-1][0]
        assert last_id is not None and [f[0] for f in seen] == sorted(f[0] for f in seen)
        moving.close()  # the reader's process goes away (a load balancer sends it elsewhere next)

        # Meanwhile events arrive at both processes.
        second.post_events(keyed_call("SSE", 1))
        first.post_events(keyed_call("SSE", 2))
        second.post_events(keyed_call("SSE", 3))
        everything: list[tuple[Any, str, str]] = []
        while len([f for f in everything if f[1] == "call_end"]) < 4:
            frame = reference.next_event(timeout=5)
            assert frame is not None, everything
            everything.append((frame.get("id"), frame["event"], frame["data"].get("call_id", "")))
        missed = [f for f in everything if f[0] is not None and f[0] > last_id]
        assert [f[2] for f in missed if f[1] == "call_end"] == ["SSE-0001", "SSE-0002", "SSE-0003"]

        resumed = SSEClient(f"{second.url}/api/v1/events", headers={"Last-Event-ID": str(last_id)}, timeout=15)
        try:
            got = _frames(resumed, until=missed[-1][0])
        finally:
            resumed.close()
        assert got == missed  # every missed event once, in order, with the same ids; no reset
    finally:
        reference.close()


def test_kill_9_of_the_process_running_the_jobs_moves_them_and_the_stale_rule_runs_once(live_server, pg_database) -> None:
    url = pg_database()
    config = {"PATTER_DASH_DB": url, "PATTER_DASH_CALL_TIMEOUT": "3"}
    servers = [live_server(**config), live_server(**config)]

    def holder() -> LiveServer | None:
        held = [s for s in servers if health(s)["history"]["log"]["runs_jobs"]]
        assert len(held) <= 1, "two processes run the jobs at once"
        return held[0] if held else None

    running = wait_for(holder, timeout=10, interval=0.2)
    other = servers[1 - servers.index(running)]
    running.kill()
    assert wait_for(lambda: health(other)["history"]["log"]["runs_jobs"], timeout=10, interval=0.2)

    # The new holder runs the stale-call rule: a silent live call is closed once, everywhere.
    started = keyed_call("STALE", 0)[:2]  # a start and one line, then silence
    other.post_events(started)
    late = live_server(**config)
    assert late.get("/api/v1/calls/STALE-0000").status_code == 200  # caught up with the live call
    wait_for(lambda: other.get("/api/v1/calls/STALE-0000").json()["data"]["status"] == "timeout", timeout=15, interval=0.2)
    wait_for(lambda: late.get("/api/v1/calls/STALE-0000").json()["data"]["status"] == "timeout", timeout=5, interval=0.2)
    assert not health(late)["history"]["log"]["runs_jobs"]
    for server in (other, late):
        statuses = [f for f in server.get("/api/v1/calls?limit=100").json()["data"] if f["call_id"] == "STALE-0000"]
        assert len(statuses) == 1 and statuses[0]["status"] == "timeout"
