"""Durable history against real crashes and restarts: kill -9, SIGTERM, HUP, two servers, stale calls.

Every test runs the shipped gunicorn + gevent server on a real SQLite file
(the standalone default, ``<DATA_DIR>/history.db``), kills or restarts it the
way production does, and compares what clients were told with what the next
process serves.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket  # websocket-client

from tests.conftest import LiveServer, payload, wait_for
from tests.sse import SSEClient

# ------------------------------------------------------------------ clients


def keyed_call(prefix: str, n: int) -> list[dict[str, Any]]:
    """One call as a runtime sends it event by event, every event with an idempotency key."""
    call_id = f"{prefix}-{n:04d}"
    now = time.time()
    events: list[dict[str, Any]] = [{"type": "call_start", "id": f"{call_id}/start", "data": {
        "call_id": call_id, "caller": f"+1555{n:07d}", "callee": "+15550001234", "direction": "inbound"}}]
    for i in range(3):
        events.append({"type": "transcript", "id": f"{call_id}/line{i}", "data": {
            "call_id": call_id, "role": "user" if i % 2 == 0 else "assistant",
            "text": f"{call_id} says line {i}", "timestamp": now + i}})
    events.append({"type": "turn", "id": f"{call_id}/turn0", "data": {"call_id": call_id, "turn": {
        "turn_index": 0, "user_text": f"{call_id} says line 0", "agent_text": f"{call_id} says line 1",
        "timestamp": now + 1, "latency": {"agent_response_ms": 300.0 + n, "total_ms": 900.0}}}})
    events.append({"type": "call_end", "id": f"{call_id}/end", "data": {
        "call_id": call_id, "ended_at": now + 20, "metrics": {
            "duration_seconds": 20.0, "provider_mode": "pipeline",
            "cost": {"stt": 0.001, "tts": 0.002, "llm": 0.003, "telephony": 0.004, "total": 0.01}}}})
    return events


def patter_call(n: int) -> list[dict[str, Any]]:
    """One call as Patter's notify_dashboard posts it (no ids: its own re-delivery rules apply)."""
    call_id = f"PATTER-{n:04d}"
    start = payload("sdk_notify_call_start.json")
    end = payload("sdk_notify_call_end.json")
    start["call_id"] = end["call_id"] = call_id
    end["ended_at"] = time.time()
    for line in end["transcript"] + end["conversation_history"]:
        line["text"] = f"{call_id}: {line['text']}"
    if "metrics" in end and isinstance(end["metrics"], dict):
        end["metrics"]["call_id"] = call_id
    return [{"type": "call_start", "data": start}, {"type": "call_end", "data": end}]


class Client(threading.Thread):
    """Sends calls one event at a time; an event is acknowledged only by a success answer.

    What was sent without an answer (the server died meanwhile) is retried
    until it is acknowledged, as a runtime with idempotency keys would.
    """

    def __init__(self, name: str, server: LiveServer, kind: str) -> None:
        super().__init__(name=name, daemon=True)
        self.server = server
        self.kind = kind
        self.stop = threading.Event()
        self.acked: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.unanswered = 0
        self.details: dict[str, Any] = {}
        self.pending: dict[str, Any] | None = None
        self.ws: Any = None

    def script(self, n: int) -> list[dict[str, Any]]:
        return patter_call(n) if self.kind == "patter" else keyed_call(self.name, n)

    def send(self, event: dict[str, Any]) -> bool:
        if self.kind == "ws":
            try:
                if self.ws is None:
                    self.ws = websocket.create_connection(self.server.url.replace("http://", "ws://") + "/api/v1/ingest/ws", timeout=5)
                self.ws.send(json.dumps(event))
                reply = json.loads(self.ws.recv())
            except (OSError, websocket.WebSocketException, ValueError):
                self.ws = None
                return False
            return bool(reply.get("ok"))
        url = f"{self.server.url}/api/dashboard/ingest" if self.kind == "patter" else f"{self.server.url}/api/v1/ingest"
        body = event["data"] if self.kind == "patter" else event
        try:
            return requests.post(url, json=body, timeout=5).status_code in (200, 202)
        except requests.RequestException:
            return False

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            events = self.script(n)
            for event in events:
                self.pending = event
                while True:
                    self.sent.append(event)
                    if self.send(event):
                        self.acked.append(event)
                        self.pending = None
                        break
                    self.unanswered += 1
                    if self.stop.wait(0.05):
                        return
            call_id = events[0]["data"]["call_id"]
            try:
                detail = requests.get(f"{self.server.url}/api/v1/calls/{call_id}", timeout=5)
                if detail.status_code == 200:
                    self.details[call_id] = detail.json()["data"]
            except requests.RequestException:
                pass
            n += 1

    def finish(self) -> None:
        self.stop.set()
        self.join(15)
        assert not self.is_alive()
        if self.ws is not None:
            self.ws.close()


def start_clients(server: LiveServer) -> list[Client]:
    clients = [Client(f"HTTP{k}", server, "http") for k in range(3)]
    clients += [Client("PATTER", server, "patter"), Client("WS", server, "ws")]
    for client in clients:
        client.start()
    return clients


def line_texts(detail: dict[str, Any]) -> list[str]:
    return [line["text"] for line in detail["transcript"]]


def _sent_texts(client: Client) -> set[str]:
    texts: set[str] = set()
    for event in list(client.sent):
        if event["type"] == "transcript":
            texts.add(event["data"]["text"])
        if event["type"] == "call_end":
            texts.update(line["text"] for line in event["data"].get("conversation_history") or [])
    return texts


def check_acknowledged(server: LiveServer, clients: list[Client]) -> int:
    """Every acknowledged event is served with its content, and nothing twice; the number of calls checked."""
    checked = 0
    for client in clients:
        by_call: dict[str, list[dict[str, Any]]] = {}
        for event in client.acked:
            by_call.setdefault(event["data"]["call_id"], []).append(event)
        for call_id, events in by_call.items():
            response = server.get(f"/api/v1/calls/{call_id}")
            assert response.status_code == 200, f"{client.name}: acknowledged call {call_id} is gone"
            detail = response.json()["data"]
            # After the read: a running client records what it sends before sending it.
            sent_texts = _sent_texts(client)
            texts = line_texts(detail)
            twice = [t for t, k in Counter(texts).items() if k > 1]
            assert not twice, f"{call_id}: lines applied twice: {twice}"
            assert set(texts) <= sent_texts, f"{call_id}: lines nobody sent"
            for event in events:
                kind, data = event["type"], event["data"]
                if kind == "transcript":
                    assert data["text"] in texts, f"{call_id}: acknowledged line lost: {data['text']!r}"
                elif kind == "turn":
                    assert detail["turn_count"] == 1 and detail["turns"][0]["agent_text"] == data["turn"]["agent_text"]
                elif kind == "call_start":
                    assert detail["caller"] == data["caller"]
                elif kind == "call_end":
                    assert detail["status"] == "completed"
                    if client.kind == "patter":
                        assert texts == [line["text"] for line in data["conversation_history"]]
                    else:
                        assert detail["cost"]["total"] == pytest.approx(0.01) and detail["duration_seconds"] == pytest.approx(20.0)
            if call_id in client.details:
                assert detail == client.details[call_id], f"{call_id}: detail changed across the crash"
            checked += 1
    return checked


def resend_keyed(server: LiveServer, clients: list[Client]) -> None:
    """Acknowledged keyed events sent again answer duplicate, and change nothing."""
    keyed = [e for c in clients if c.kind != "patter" for e in c.acked]
    for start in range(0, len(keyed), 500):
        response = requests.post(f"{server.url}/api/v1/ingest", json={"events": keyed[start:start + 500]}, timeout=30)
        assert response.status_code == 200, response.text
        assert all(a["duplicate"] for a in response.json()["accepted"])
    ends = [e for c in clients if c.kind == "patter" for e in c.acked if e["type"] == "call_end"]
    for event in ends:
        response = requests.post(f"{server.url}/api/dashboard/ingest", json=event["data"], timeout=10)
        assert response.status_code == 200 and response.json()["duplicate"] is True, response.text


def ingest_through(server: LiveServer, clients: list[Client], seconds: float) -> None:
    """Let the clients run until each has acknowledged something more, for at least ``seconds``."""
    marks = [len(c.acked) for c in clients]
    time.sleep(seconds)
    wait_for(lambda: all(len(c.acked) > m for c, m in zip(clients, marks)), timeout=20, interval=0.1)


# ------------------------------------------------------------ 1. kill -9


def test_kill_9_of_worker_then_of_master_and_worker_loses_nothing_acknowledged(live_server):
    server = live_server()
    clients = start_clients(server)
    ingest_through(server, clients, 1.5)

    # The worker alone: the master starts another; clients retry what got no answer.
    old = server.worker_pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _pid(server) not in (None, old), timeout=15, interval=0.05)
    ingest_through(server, clients, 1.5)
    assert sum(c.unanswered for c in clients) > 0, "the kill happened between requests: nothing was in flight"
    assert check_acknowledged(server, clients) > 0

    # Master and worker together, mid-stream.
    server.kill()
    for client in clients:
        client.finish()
    acked = sum(len(c.acked) for c in clients)
    again = server.start()  # the same data directory: a restart
    calls = check_acknowledged(again, clients)
    resend_keyed(again, clients)
    assert check_acknowledged(again, clients) == calls
    # What was in flight at the kill, sent again, lands once.
    for client in clients:
        if client.pending is not None:
            client.server = again
            assert client.send(client.pending)
            client.acked.append(client.pending)
    check_acknowledged(again, clients)
    health = again.get("/api/v1/health").json()
    print(f"{acked} events acknowledged over {calls} calls; {sum(c.unanswered for c in clients)} sends unanswered; "
          f"restored in {health['history']['restore_seconds']} s")


def _pid(server: LiveServer) -> int | None:
    try:
        return requests.get(f"{server.url}/api/v1/health", timeout=1).json()["pid"]
    except (requests.RequestException, ValueError):
        return None


# ------------------------------------------------------- 2. restart equality


def history_events(now: float) -> list[dict[str, Any]]:
    """240 finished calls over four days (statuses, directions, modes, costs), plus two live ones."""
    events: list[dict[str, Any]] = []
    for i in range(240):
        call_id = f"HIST-{i:03d}"
        started = now - 4 * 86_400 + i * 1_400
        direction = "outbound" if i % 3 == 0 else "inbound"
        events.append({"type": "call_initiated" if direction == "outbound" else "call_start", "data": {
            "call_id": call_id, "caller": f"+1555{i:07d}", "callee": "+15550009999", "direction": direction,
            "started_at": started}})
        if i % 11 == 0:
            events.append({"type": "call_status", "data": {"call_id": call_id, "status": "no-answer" if i % 2 else "failed"}})
            continue
        events.append({"type": "transcript", "data": {"call_id": call_id, "role": "user",
                                                      "text": f"I need {'a refund' if i % 4 == 0 else 'an appointment'} #{i}",
                                                      "timestamp": started + 2}})
        events.append({"type": "turn", "data": {"call_id": call_id, "turn": {
            "turn_index": 0, "user_text": "hello", "agent_text": f"answer {i}", "timestamp": started + 3,
            "latency": {"agent_response_ms": 250.0 + (i * 37) % 900, "stt_ms": 80.0, "llm_ms": 120.0, "tts_ms": 50.0}}}})
        cost = {"stt": 0.001 * (i % 5), "tts": 0.002, "llm": 0.0007 * (i % 9), "telephony": 0.0085}
        cost["total"] = round(sum(cost.values()), 6)
        events.append({"type": "call_end", "data": {"call_id": call_id, "ended_at": started + 30 + i % 300, "metrics": {
            "duration_seconds": 30 + i % 300, "provider_mode": "realtime" if i % 5 == 0 else "pipeline",
            "stt_provider": "deepgram", "llm_model": "gpt-4o-mini", "cost": cost,
            "latency_avg": {"agent_response_ms": 250.0 + (i * 37) % 900}}}})
    for i in range(2):
        events.append({"type": "call_start", "data": {"call_id": f"LIVE-{i}", "caller": "+15550000000"}})
        events.append({"type": "transcript", "data": {"call_id": f"LIVE-{i}", "role": "user", "text": f"still talking {i}"}})
    return events


def read_everything(server: LiveServer, now: float) -> dict[str, Any]:
    """Every read a user makes of history, as JSON (or text, for the CSV)."""
    window = f"from={now - 3 * 86_400:.0f}&to={now - 86_400:.0f}"
    paths = [
        "/api/v1/calls?limit=1000", "/api/v1/calls?limit=50&offset=100", "/api/v1/calls?full=1&limit=60",
        "/api/v1/calls?q=refund&limit=1000", "/api/v1/calls?status=failed", "/api/v1/calls?status=no-answer",
        "/api/v1/calls?direction=outbound&limit=1000", "/api/v1/calls?provider_mode=realtime&limit=1000",
        f"/api/v1/calls?{window}&limit=1000", f"/api/v1/calls?q=appointment&direction=inbound&{window}",
        "/api/v1/calls/HIST-007", "/api/v1/calls/HIST-011", "/api/v1/calls/HIST-239", "/api/v1/calls/HIST-000",
        "/api/v1/export/json", "/api/v1/export/json?format=ndjson", "/api/v1/export/json?q=refund",
        "/api/v1/analytics/overview", f"/api/v1/analytics/overview?{window}",
        "/api/v1/analytics/costs?bucket=hour", "/api/v1/analytics/costs?bucket=day",
        f"/api/v1/analytics/costs?bucket=hour&{window}", "/api/v1/calls/active",
    ]
    seen: dict[str, Any] = {}
    for path in paths:
        response = server.get(path)
        assert response.status_code == 200, (path, response.text)
        body = [json.loads(line) for line in response.text.splitlines()] if "ndjson" in path else response.json()
        seen[path] = _without_live_clock(body)
    for path in ("/api/v1/export/csv", "/api/v1/export/csv?status=failed"):
        response = server.get(path)
        assert response.status_code == 200
        seen[path] = response.text
    return seen


def _without_live_clock(body: Any) -> Any:
    """A live call's duration is its age: the one thing that may differ between two reads."""
    body = copy.deepcopy(body)
    items = body.get("data") if isinstance(body, dict) else body
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict) and item.get("status") in ("active", "in-progress", "ringing", "initiated"):
            item.pop("duration_seconds", None)
    return body


def test_restart_serves_the_same_history_as_before(live_server):
    now = time.time()
    server = live_server()
    server.post_events(history_events(now))
    wait_for(lambda: server.get("/api/v1/health").json()["store"]["completed"] == 240)
    before = read_everything(server, now)
    assert before["/api/v1/analytics/overview"]["data"]["total_calls"] == 240
    assert len(before["/api/v1/calls?q=refund&limit=1000"]["data"]) > 20
    assert before["/api/v1/calls/active"]["count"] == 2

    server.stop()  # SIGTERM: a deploy
    _assert_same(before, read_everything(server.start(), now))

    server.kill()  # kill -9 of master and worker: a crash
    _assert_same(before, read_everything(server.start(), now))


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for path, body in before.items():
        assert after[path] == body, f"{path} differs after the restart"


# --------------------------------------------------- 7. two servers and HUP


def test_a_second_server_on_the_same_file_is_refused(live_server, tmp_path: Path):
    first = live_server()
    first.post_events(keyed_call("ONE", 1))
    second = LiveServer(tmp_path, {"PATTER_DASH_DB": str(tmp_path / "data" / "history.db"),
                                   "PATTER_DASH_DATA_DIR": str(tmp_path / "other")}).start(wait=False)
    try:
        code = second.proc.wait(30)
    finally:
        second.kill()
    log = second.logs()
    assert code != 0
    holder = first.worker_pid()
    assert f"history.db is in use by another patter-dash server (process {holder})" in log, log[-3000:]
    assert "give this one its own PATTER_DASH_DB" in log
    # The first one never noticed.
    first.post_events(keyed_call("ONE", 2))
    assert first.get("/api/v1/calls/ONE-0002").json()["data"]["status"] == "completed"


def test_hup_reload_hands_the_file_to_the_new_worker_with_history_intact(live_server):
    server = live_server()
    for n in range(20):
        server.post_events(keyed_call("BEFORE", n))
    before = server.get("/api/v1/calls?limit=1000").json()
    overview = server.get("/api/v1/analytics/overview").json()
    clients = [Client("DURING", server, "http")]
    clients[0].start()
    time.sleep(0.5)
    old = server.worker_pid()
    hup = time.monotonic()
    os.kill(server.proc.pid, signal.SIGHUP)
    new = wait_for(lambda: (pid := _pid(server)) not in (None, old) and pid, timeout=30, interval=0.05)
    print(f"HUP: the new worker served {time.monotonic() - hup:.2f} s after the signal")
    ingest_through(server, clients, 1.0)
    clients[0].finish()
    assert server.proc.poll() is None, "the master must survive HUP"
    with pytest.raises(ProcessLookupError):
        wait_for(lambda: os.kill(old, 0), timeout=15, interval=0.1)  # the old worker has exited
    health = server.get("/api/v1/health").json()
    assert health["pid"] == new and health["status"] == "ok" and health["history"]["status"] == "ok"
    after = server.get("/api/v1/calls?limit=1000").json()["data"]
    assert [c for c in after if c["call_id"].startswith("BEFORE")] == before["data"]
    during = [c for c in after if c["call_id"].startswith("DURING")]
    assert overview["data"]["total_calls"] + len(during) == server.get("/api/v1/analytics/overview").json()["data"]["total_calls"]
    check_acknowledged(server, clients)
    lock = Path(server.config["PATTER_DASH_DATA_DIR"]) / "history.db.lock"
    assert lock.read_text().split()[0] == str(new)
    log = server.logs()
    assert "Worker failed to boot" not in log and "Exception in worker process" not in log and " ERROR " not in log


# ------------------------------------------------------------ 8. stale calls


def test_a_call_without_events_times_out_and_a_late_end_still_completes_it(live_server):
    server = live_server(PATTER_DASH_CALL_TIMEOUT="2")
    stream = SSEClient(f"{server.url}/api/v1/events?types=call_status", timeout=15)
    stream.next_block()
    server.post_events([
        {"type": "call_start", "data": {"call_id": "STALE", "caller": "+15551112222"}},
        {"type": "transcript", "data": {"call_id": "STALE", "role": "user", "text": "hello?"}},
        {"type": "call_start", "data": {"call_id": "TALKING"}},
    ])
    sent = time.monotonic()
    while time.monotonic() - sent < 8:  # a live call that keeps talking is not stale
        server.post_events([{"type": "transcript", "data": {"call_id": "TALKING", "role": "user", "text": f"still here {time.time()}"}}])
        if server.get("/api/v1/calls/STALE").json()["data"]["status"] == "timeout":
            break
        time.sleep(0.3)
    closed = time.monotonic() - sent
    announced = stream.next_event(timeout=5)
    assert announced is not None and announced["event"] == "call_status" and announced["data"]["call_id"] == "STALE"
    assert announced["data"]["call"]["status"] == "timeout" and "stale_timeout" in announced["data"]["call"]["flags"]
    # Never early; late by the reaper's second plus what a loaded machine adds.
    assert 2.0 <= closed < 8, f"closed after {closed:.1f} s with a 2 s timeout"
    stream.close()

    detail = server.get("/api/v1/calls/STALE").json()["data"]
    assert detail["status"] == "timeout" and "stale_timeout" in detail["flags"] and detail["transcript"][0]["text"] == "hello?"
    assert server.get("/api/v1/calls/TALKING").json()["data"]["status"] != "timeout"
    assert [c["call_id"] for c in server.get("/api/v1/calls?status=timeout").json()["data"]] == ["STALE"]
    overview = server.get("/api/v1/analytics/overview").json()["data"]
    assert overview["calls_by_status"] == {"timeout": 1} and overview["total_calls"] == 1 and overview["active_calls"] == 1
    server.post_events([{"type": "call_end", "data": {"call_id": "TALKING"}}])

    # Closed with no event after it: written within a second all the same, so a crash
    # brings it back closed (not live again, and not closed later at another time).
    server.post_events([{"type": "call_start", "data": {"call_id": "QUIET"}}])
    quiet = wait_for(lambda: (d := server.get("/api/v1/calls/QUIET").json()["data"])["status"] == "timeout" and d,
                     timeout=6, interval=0.1)
    time.sleep(1.5)
    server.kill()
    server.start()
    assert server.get("/api/v1/calls/STALE").json()["data"] == detail
    assert server.get("/api/v1/calls/QUIET").json()["data"] == quiet
    assert server.get("/api/v1/analytics/overview").json()["data"]["calls_by_status"] == {"timeout": 2, "completed": 1}

    # The runtime was only slow: its call_end completes the call with its numbers.
    late = {"call_id": "STALE", "ended_at": time.time(), "metrics": {
        "duration_seconds": 42.0, "cost": {"stt": 0.1, "tts": 0.1, "llm": 0.1, "telephony": 0.2, "total": 0.5}}}
    server.post_events([{"type": "call_end", "data": late}])
    detail = server.get("/api/v1/calls/STALE").json()["data"]
    assert detail["status"] == "completed" and detail["duration_seconds"] == 42.0 and detail["cost"]["total"] == 0.5
    overview = server.get("/api/v1/analytics/overview").json()["data"]
    assert overview["calls_by_status"] == {"completed": 2, "timeout": 1} and overview["total_cost"] == pytest.approx(0.5)
    server.stop()
    server.start()
    assert server.get("/api/v1/calls/STALE").json()["data"] == detail
    assert server.get("/api/v1/analytics/overview").json()["data"] == overview


def test_a_silent_call_times_out_while_ingest_never_pauses(live_server):
    """The event thread's once-a-second duties (the stale-call rule, alert windows, checkpoints, SSE reaping)
    run while batches keep coming. They used to wait for a moment with nothing queued: a drain that wrote
    what its last batch derived found the next batch queued meanwhile, wrote it, and so on, for as long as
    ingest lasted, with every batch written in two transactions."""
    server = live_server(PATTER_DASH_CALL_TIMEOUT="2")
    server.post_events([{"type": "call_start", "data": {"call_id": "SILENT"}}])
    started = time.monotonic()
    stop = threading.Event()
    bodies: list[int] = []

    def client(k: int) -> None:
        n = 0
        while not stop.is_set():
            server.post_events([e for i in range(20) for e in keyed_call(f"LOAD{k}", n + i)])
            n += 20
            bodies.append(k)

    clients = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for thread in clients:
        thread.start()
    try:
        while (status := server.get("/api/v1/calls/SILENT").json()["data"]["status"]) != "timeout":
            if time.monotonic() - started > 10:
                break
            time.sleep(0.2)
        waited = time.monotonic() - started
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
    assert status == "timeout", f"still {status} after {waited:.1f} s of ingest ({len(bodies)} bodies) with a 2 s timeout"
    assert 2.0 <= waited < 8, f"closed after {waited:.1f} s with a 2 s timeout"
    assert len(bodies) >= 3 * 3, "the clients did not keep the server busy"
    health = server.get("/api/v1/health").json()
    # One transaction a body (the derived writes ride with the next), not two.
    assert health["history"]["commits"] <= len(bodies) * 1.3 + 10, (len(bodies), health["history"])

