"""Several dashboard processes on one PostgreSQL (issue 17): one ordered log, one live view.

Real gunicorn + gevent servers (one of them ``-w 2``) and a real PostgreSQL
(tests/pg.py): what is ingested on one is served alike by the others (lists,
details, search, analytics, exports), deletions reach every process, a late
server catches up to the same history, an SSE reader moving to another
process resumes exactly with Last-Event-ID, and the jobs that run once move
when the process holding them is killed. Also: PostgreSQL stopped under two
processes (both refuse, both recover, every acknowledged event once), Patter
log following in one process at a time, retention and alert delivery once.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import requests

from tests.conftest import LiveServer, wait_for
from tests.ops.test_alerts import (  # noqa: F401 (receivers: a fixture)
    SECRET, alerts, receivers, rule, slow_turn_rule, start, turn, webhook_rules,
)
from tests.sse import SSEClient
from tests.test_history_crash import keyed_call
from tests.test_history_faults import assert_acknowledged, health
from tests.test_postgres import Runtime, _views


def _total(server: LiveServer) -> int:
    return server.get("/api/v1/analytics/overview").json()["data"]["total_calls"]


def _caught_up(server: LiveServer, views: dict[str, Any], detail: str = "PG-0003") -> bool:
    """Whether ``server`` (every worker of it: a few reads) serves exactly ``views``."""
    return all(_views(server, detail) == views for _ in range(3))


def _holds(server: LiveServer, events: list[dict[str, Any]]) -> bool:
    """Whether ``server`` serves every one of ``events`` (see assert_acknowledged), without failing."""
    try:
        assert_acknowledged(server, events)
    except AssertionError:
        return False
    return True


def _converges(server: LiveServer, views: dict[str, Any], detail: str = "PG-0003", timeout: float = 10.0) -> None:
    """``server`` comes to serve exactly ``views``; if not, the failure says what differs (and health)."""
    try:
        wait_for(lambda: _caught_up(server, views, detail), timeout=timeout, interval=0.2)
    except AssertionError:
        for _ in range(4):  # a few reads: each may meet another worker
            served = _views(server, detail)
            differs = {path: (views[path], served[path]) for path in views if served[path] != views[path]}
            assert not differs, (_differences(differs), health(server)["history"])
        raise


def _differences(differs: dict[str, tuple[Any, Any]]) -> list[str]:
    out = []
    for path, (want, got) in differs.items():
        if isinstance(want, str):
            want, got = want.splitlines(), got.splitlines()
            out.append(f"{path}: missing {[x for x in want if x not in got][:3]} extra {[x for x in got if x not in want][:3]}")
        elif isinstance(want.get("data"), list):
            a, b = ({c["call_id"]: c for c in side["data"]} for side in (want, got))
            out.append(f"{path}: order {list(b)}; differing " + str([(a[i], b.get(i)) for i in a if a[i] != b.get(i)][:2]))
        else:
            out.append(f"{path}: want {want} got {got}")
    return out


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
    _converges(second, views)

    # A deletion on one process reaches the others' memory, totals and lists.
    assert requests.delete(f"{second.url}/api/v1/calls/PG-0002", timeout=10).status_code == 200
    wait_for(lambda: first.get("/api/v1/calls/PG-0002").status_code == 404, timeout=5)
    after = _views(first)
    assert after["/api/v1/analytics/overview"]["data"]["total_calls"] == 11
    _converges(second, after)

    late = live_server(PATTER_DASH_DB=url)  # a third process, started after all of it
    assert _views(late) == after
    late.post_events(keyed_call("PG", 12))  # and what it takes, the others show
    wait_for(lambda: first.get("/api/v1/calls/PG-0012").status_code == 200 and _total(first) == 12, timeout=5)
    final = _views(late)
    _converges(first, final)
    _converges(second, final)
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


def test_one_process_follows_patters_logs_and_another_takes_over_when_it_dies(live_server, pg_database, tmp_path,
                                                                              monkeypatch) -> None:
    """Two servers given one log root and one database: one reads it (the jobs' holder), the other stands by."""
    from getpatter.services.call_log import CallLogger

    from tests.test_patter_logs import simple_call

    monkeypatch.setenv("PATTER_LOG_RETENTION_DAYS", "0")  # no sweep of the test's own days
    root = tmp_path / "patter-logs"
    logger = CallLogger(root)
    url = pg_database()
    config = {"PATTER_DASH_DB": url, "PATTER_DASH_PATTER_LOG_DIR": str(root)}
    servers = [live_server(**config), live_server(**config)]

    def statuses() -> list[str]:
        return [s.get("/api/v1/health").json()["patter_logs"]["status"] for s in servers]

    wait_for(lambda: sorted(statuses()) == ["standby", "waiting"], timeout=15, interval=0.2)  # no calls/ yet
    simple_call(logger, "CA-one")
    wait_for(lambda: sorted(statuses()) == ["following", "standby"], timeout=15, interval=0.2)
    for server in servers:
        wait_for(lambda: server.get("/api/v1/calls/CA-one").status_code == 200, timeout=10, interval=0.1)
    reader = servers[statuses().index("following")]
    other = servers[1 - servers.index(reader)]
    assert other.get("/api/v1/health").json()["patter_logs"]["calls_followed"] == 0

    reader.kill()
    wait_for(lambda: other.get("/api/v1/health").json()["patter_logs"]["status"] == "following", timeout=15, interval=0.2)
    simple_call(logger, "CA-two")
    wait_for(lambda: (r := other.get("/api/v1/calls/CA-two")).status_code == 200 and r.json()["data"]["ended_at"],
             timeout=10, interval=0.1)
    listed = other.get("/api/v1/calls?limit=100").json()
    assert sorted(c["call_id"] for c in listed["data"]) == ["CA-one", "CA-two"]  # once each: the cursor was shared
    assert len(other.get("/api/v1/calls/CA-one").json()["data"]["transcript"]) == 3
    assert other.get("/api/v1/health").json()["patter_logs"]["calls_followed"] == 1  # CA-two: the cursor was shared


def test_postgres_stopped_under_two_processes_both_refuse_then_both_recover_with_every_event_once(
    live_server, pg_server, pg_database
) -> None:
    url = pg_database()
    servers = [live_server(PATTER_DASH_DB=url), live_server(PATTER_DASH_DB=url)]
    runtime = Runtime(servers)  # calls alternate between the two processes
    try:
        wait_for(lambda: runtime.reached(60), timeout=20)
        pg_server.stop("immediate")
        pg_server.wait_down()
        for server in servers:
            state = wait_for(lambda: (h := health(server))["status"] == "degraded" and h, timeout=20, interval=0.1)
            assert state["history"]["database"] == "unreachable"
        stalled = len(runtime.acked)
        time.sleep(1.0)
        assert len(runtime.acked) == stalled  # nothing acknowledged that is not committed, on either
        pg_server.start()
        for server in servers:
            wait_for(lambda: health(server)["history"]["database"] == "ok", timeout=20, interval=0.1)
        wait_for(lambda: runtime.reached(stalled + 60), timeout=20)
    finally:
        runtime.stop()
    assert runtime.unexpected == [] and runtime.refusals
    # Each process caught up with the other's events from its own position: every acknowledged event, once.
    views = _views(servers[0], "ING-0003")
    _converges(servers[1], views, "ING-0003")
    for server in servers:
        # The views above list finished calls: the last call is still live, and the process that did not take
        # it may be a notification behind on its last events (one CI run asserted in that moment).
        wait_for(lambda: _holds(server, runtime.acked), timeout=10, interval=0.2)
        assert_acknowledged(server, runtime.acked)


def test_retention_purges_once_in_the_process_running_the_jobs_and_every_process_follows(live_server, pg_database) -> None:
    from patter_dash.journal.codec import unpack_event
    from tests.test_history_delete import DAY, NOW, ended, listed, started

    from tests.journal.conftest import query

    url = pg_database()
    seeding = live_server(PATTER_DASH_DB=url, PATTER_DASH_RETENTION_DAYS="0")  # keep forever while seeding
    old = [f"old{i}" for i in range(6)]
    seeding.post_events([ended(c, NOW - 10 * DAY + i * 60, cost=0.5) for i, c in enumerate(old)]
                        + [ended(f"new{i}", NOW - DAY + i * 60, cost=0.25) for i in range(2)])
    seeding.post_events([started("poke")])  # the next transaction writes the finished calls whole
    seeding.stop()

    config = {"PATTER_DASH_DB": url, "PATTER_DASH_RETENTION_DAYS": "5"}
    servers = [live_server(**config), live_server(**config)]
    for server in servers:
        wait_for(lambda: sorted(listed(server)) == ["new0", "new1"], timeout=15, interval=0.2)
        overview = server.get("/api/v1/analytics/overview").json()["data"]
        assert overview["total_calls"] == 2 and overview["total_cost"] == 0.5
        assert server.get("/api/v1/calls/old0").status_code == 404
    # Once: one process purged, and its deletions are events of the log that the other applied.
    deleted = [call_id for kind, call_id, key, at, data in query(
        url, "SELECT type, call_id, key, received_at, data FROM events WHERE type = '__delete__'")
        for call_id in unpack_event(kind, call_id, key, at, bytes(data)).data["call_ids"]]
    assert sorted(deleted) == old
    assert [health(s)["history"]["log"]["runs_jobs"] for s in servers].count(True) == 1


def _alert_frames(stream: SSEClient, count: int) -> list[dict[str, Any]]:
    frames = []
    while len(frames) < count:
        frame = stream.next_event(timeout=10)
        assert frame is not None, frames
        frames.append(frame)
    return frames


def _shown(server: LiveServer) -> tuple[Any, ...]:
    """What a page shows of the slow-turn rule: its state, what fires, its history, its counts."""
    state = alerts(server)
    held = rule(state, "slow-turn")
    return (state.firing, held.state, [(f.call_id, f.since) for f in held.firing],
            [(n.id, n.state, n.call_id) for n in held.history], held.notified)


def test_alerts_are_evaluated_and_delivered_once_and_every_process_shows_them_live(live_server, pg_database, receivers,
                                                                                   tmp_path) -> None:
    """The rule's event reaches the process that did not take it: one firing, one resolution, one delivery each;
    both processes answer the same alerts, and a page on either gets the frames under the log's numbers."""
    hook = receivers(secret=SECRET)
    config = {"PATTER_DASH_DB": pg_database(), "PATTER_DASH_ALERTS": webhook_rules(tmp_path, hook, slow_turn_rule())}
    servers = [live_server(**config), live_server(**config)]
    jobs = wait_for(lambda: [s for s in servers if health(s)["history"]["log"]["runs_jobs"]], timeout=10, interval=0.2)
    other = servers[1 - servers.index(jobs[0])]
    streams = [SSEClient(f"{s.url}/api/v1/events?types=alert_firing,alert_resolved", timeout=15) for s in (jobs[0], other)]
    try:
        other.post_events([start("slow", "+1"), turn("slow", 0, 2000)])  # taken by the process not running the jobs
        fired = hook.wait_for(lambda n: n["state"] == "firing")[0]
        wait_for(lambda: all(_shown(s)[:2] == (1, "firing") for s in servers), timeout=5, interval=0.1)
        assert _shown(jobs[0]) == _shown(other)
        other.post_events([turn("slow", 1, 100)])
        resolved = hook.wait_for(lambda n: n["state"] == "resolved")[0]
        time.sleep(1.5)  # a second process delivering would have by now
        assert [n["state"] for n in hook.accepted] == ["firing", "resolved"]
        wait_for(lambda: all(_shown(s)[:2] == (0, "ok") for s in servers), timeout=5, interval=0.1)
        assert _shown(jobs[0]) == _shown(other)
        assert _shown(other)[3] == [(resolved["id"], "resolved", "slow"), (fired["id"], "firing", "slow")]
        assert [alerts(s).decided_here for s in (jobs[0], other)] == [True, False]
        # The deciding process's delivery counts, as of its last second.
        wait_for(lambda: [d.delivered for d in alerts(other).destinations if d.name == "hook"] == [2], timeout=5, interval=0.2)
        # Both pages got both frames, with the webhook's bodies and the same ids: the log's numbers.
        frames = [_alert_frames(stream, 2) for stream in streams]
        assert [[f["data"]["id"] for f in side] for side in frames] == [[fired["id"], resolved["id"]]] * 2
        assert [f["id"] for f in frames[0]] == [f["id"] for f in frames[1]] and all(f["id"] for f in frames[0])
        assert [f["data"]["seq"] for f in frames[1]] == [int(f["id"]) for f in frames[1]]
    finally:
        for stream in streams:
            stream.close()


def test_the_process_taking_the_jobs_over_goes_on_from_the_firing_state(live_server, pg_database, receivers,
                                                                         tmp_path) -> None:
    """kill -9 of the deciding process while a rule fires: the next one neither fires it again nor forgets it;
    it resolves it, once. A process started afterwards shows the same alerts."""
    hook = receivers(secret=SECRET)
    config = {"PATTER_DASH_DB": pg_database(), "PATTER_DASH_ALERTS": webhook_rules(tmp_path, hook, slow_turn_rule())}
    servers = [live_server(**config), live_server(**config)]
    jobs = wait_for(lambda: [s for s in servers if health(s)["history"]["log"]["runs_jobs"]], timeout=10, interval=0.2)[0]
    other = servers[1 - servers.index(jobs)]
    other.post_events([start("slow", "+1"), turn("slow", 0, 2000)])
    fired = hook.wait_for(lambda n: n["state"] == "firing")[0]
    wait_for(lambda: _shown(other)[:2] == (1, "firing"), timeout=5, interval=0.1)
    jobs.kill()
    wait_for(lambda: health(other)["history"]["log"]["runs_jobs"], timeout=10, interval=0.2)
    other.post_events([turn("slow", 1, 2500)])  # still slow: still the same firing
    time.sleep(1.5)
    assert [n["id"] for n in hook.accepted] == [fired["id"]]
    late = live_server(**config)
    assert _shown(late) == _shown(other) and _shown(late)[:2] == (1, "firing")
    other.post_events([turn("slow", 2, 100)])
    resolved = hook.wait_for(lambda n: n["state"] == "resolved")[0]
    assert resolved["since"] == fired["since"]  # the same firing, resolved
    time.sleep(1.0)
    assert [n["state"] for n in hook.accepted] == ["firing", "resolved"]
    wait_for(lambda: _shown(late) == _shown(other), timeout=5, interval=0.1)
    assert _shown(late)[:2] == (0, "ok") and _shown(late)[4] == 2


def test_a_notification_pending_when_the_deciding_process_dies_is_sent_by_the_next_one(live_server, pg_database,
                                                                                       receivers, tmp_path) -> None:
    hook = receivers(secret=SECRET, mode="fail")
    rules = webhook_rules(tmp_path, hook, slow_turn_rule()).replace('secret = "', 'max_attempts = 100\nsecret = "')
    config = {"PATTER_DASH_DB": pg_database(), "PATTER_DASH_ALERTS": rules}
    servers = [live_server(**config), live_server(**config)]
    jobs = wait_for(lambda: [s for s in servers if health(s)["history"]["log"]["runs_jobs"]], timeout=10, interval=0.2)[0]
    other = servers[1 - servers.index(jobs)]
    other.post_events([start("slow", "+1"), turn("slow", 0, 2000)])
    wait_for(lambda: hook.requests, timeout=10, interval=0.05)  # tried, refused: pending in the outbox
    tried = msgspec.json.decode(hook.requests[0]["body"])
    jobs.kill()
    hook.mode = "ok"
    delivered = hook.wait_for(lambda n: n["id"] == tried["id"], timeout=20)
    time.sleep(1.5)  # nothing more comes
    assert [n["id"] for n in hook.accepted] == [tried["id"]] and len(delivered) == 1
    assert hook.bad_signatures == 0
    wait_for(lambda: [(d.delivered, d.pending) for d in alerts(other).destinations] == [(1, 0)], timeout=5, interval=0.2)
