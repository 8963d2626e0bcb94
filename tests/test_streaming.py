"""Live streams against real gunicorn + gevent: SSE and WebSocket."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
import websocket  # websocket-client

from tests.conftest import wait_for
from tests.sse import SSEClient


def start_event(call_id: str, **extra):
    return {"type": "call_start", "data": {"call_id": call_id, "caller": "+15550001", "callee": "+15550002", **extra}}


def line_event(call_id: str, text: str):
    return {"type": "transcript", "data": {"call_id": call_id, "role": "user", "text": text}}


def subscribers(server) -> int:
    return server.get("/api/v1/health").json()["subscribers"]["count"]


@pytest.mark.checklist(8)
def test_sse_headers_first_bytes_and_ordered_events(live_server):
    server = live_server()
    t0 = time.monotonic()
    sse = SSEClient(f"{server.url}/api/v1/events")
    first = sse.next_block(time.monotonic() + 2)
    first_bytes = time.monotonic() - t0
    assert sse.status == 200
    assert sse.response.headers["Content-Type"].startswith("text/event-stream")
    assert sse.response.headers["Cache-Control"] == "no-cache"
    assert sse.response.headers["X-Accel-Buffering"] == "no"
    assert first.startswith("retry: ")
    print(f"first bytes after {first_bytes * 1000:.0f} ms")
    assert first_bytes < 0.1
    sent = time.monotonic()
    server.post_events([start_event("S1"), line_event("S1", "hello"), {"type": "call_end", "data": {"call_id": "S1"}}])
    events = [sse.next_event() for _ in range(3)]
    delivered = time.monotonic() - sent
    print(f"third event after {delivered * 1000:.0f} ms")
    assert delivered < 0.2
    assert [e["event"] for e in events] == ["call_start", "transcript", "call_end"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events) and len({e["id"] for e in events}) == 3
    assert events[1]["data"]["line"]["text"] == "hello" and events[2]["data"]["call"]["status"] == "completed"
    sse.close()


@pytest.mark.checklist(9, 10)
def test_heartbeat_and_disconnect_frees_the_subscriber(live_server):
    server = live_server(PATTER_DASH_HEARTBEAT="0.5")
    sse = SSEClient(f"{server.url}/api/v1/events")
    sse.next_block()
    assert sse.next_block(time.monotonic() + 2) == ": heartbeat"
    assert subscribers(server) == 1
    sse.close()
    t0 = time.monotonic()
    wait_for(lambda: subscribers(server) == 0, timeout=2)
    print(f"subscriber freed {time.monotonic() - t0:.2f} s after the client left (heartbeat 0.5 s)")
    assert time.monotonic() - t0 < 0.5 + 0.25  # within one heartbeat


@pytest.mark.checklist(13)
def test_resume_with_last_event_id_gets_exactly_the_missed_events(live_server):
    server = live_server(PATTER_DASH_REPLAY_SIZE="50")
    acks = server.post_events([start_event(f"R{i}") for i in range(10)]).json()["accepted"]
    seqs = [a["seq"] for a in acks]
    sse = SSEClient(f"{server.url}/api/v1/events", headers={"Last-Event-ID": str(seqs[3])})
    got = [sse.next_event()["id"] for _ in range(6)]
    assert got == seqs[4:]
    server.post_events([start_event("R-live")])
    assert sse.next_event()["data"]["call_id"] == "R-live"
    sse.close()
    # the query-string form, for tools
    sse = SSEClient(f"{server.url}/api/v1/events?last_event_id={seqs[7]}")
    assert [sse.next_event()["id"] for _ in range(3)] == [*seqs[8:], seqs[-1] + 1]
    sse.close()
    # older than the ring: told to refetch, then live
    server.post_events([start_event(f"old{i}") for i in range(60)])
    sse = SSEClient(f"{server.url}/api/v1/events", headers={"Last-Event-ID": "1"})
    assert sse.next_event()["event"] == "reset"
    sse.close()


def test_filters_follow_one_call_and_limit_types(live_server):
    server = live_server()
    one = SSEClient(f"{server.url}/api/v1/events?call_id=F2")
    typed = SSEClient(f"{server.url}/api/v1/events?types=transcript")
    one.next_block(), typed.next_block()
    server.post_events([start_event("F1"), start_event("F2"), line_event("F1", "a"), line_event("F2", "b")])
    assert [one.next_event()["data"]["call_id"] for _ in range(2)] == ["F2", "F2"]
    assert [typed.next_event()["data"]["line"]["text"] for _ in range(2)] == ["a", "b"]
    bad = requests.get(f"{server.url}/api/v1/events?types=nope", timeout=5)
    assert bad.status_code == 400 and "types" in bad.json()["error"]
    bad = requests.get(f"{server.url}/api/v1/events", headers={"Last-Event-ID": "x"}, timeout=5)
    assert bad.status_code == 400 and "last_event_id" in bad.json()["error"]


@pytest.mark.checklist(14)
def test_crlf_and_nul_in_data_cannot_forge_fields(live_server):
    server = live_server()
    sse = SSEClient(f"{server.url}/api/v1/events")
    sse.next_block()
    hostile = "x\r\nevent: call_end\r\ndata: {}\rid: 9\n\nid: 99\x00"
    server.post_events([start_event("INJ", caller=hostile), line_event("INJ", hostile)])
    events = [sse.next_event() for _ in range(2)]
    assert [e["event"] for e in events] == ["call_start", "transcript"]
    assert events[0]["data"]["call"]["caller"] == hostile.replace("\x00", "")
    sse.close()
    lines = sse.raw.decode().split("\n")
    assert "\r" not in sse.raw.decode()
    fields = [ln.split(":", 1)[0] for ln in lines if ln and not ln.startswith(":")]
    assert fields.count("event") == 2 and fields.count("id") == 2 and fields.count("data") == 2


@pytest.mark.checklist(11)
def test_a_client_that_never_reads_is_cut_off_and_others_get_everything(live_server):
    server = live_server(PATTER_DASH_SUBSCRIBER_QUEUE="200", PATTER_DASH_REPLAY_SIZE="20000")
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", server.port))
    stuck.sendall(f"GET {server.prefix}/api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    reader = SSEClient(f"{server.url}/api/v1/events", timeout=30)
    reader.next_block()
    wait_for(lambda: subscribers(server) == 2)
    text = "y" * 2000
    total = 3000
    for start in range(0, total, 500):
        server.post_events([line_event(f"SLOW{start}", f"{i} {text}") for i in range(start, start + 500)])
    received = [reader.next_event(timeout=30)["data"]["line"]["text"].split()[0] for _ in range(total)]
    assert received == [str(i) for i in range(total)]
    health = wait_for(lambda: (h := server.get("/api/v1/health").json())["subscribers"]["overflows"] >= 1 and h, timeout=5)
    assert health["subscribers"]["count"] == 1
    reader.close()
    stuck.close()


@pytest.mark.checklist(12)
def test_subscriber_cap_answers_503_while_rest_keeps_working(live_server):
    server = live_server(PATTER_DASH_MAX_SUBSCRIBERS="3")
    streams = [SSEClient(f"{server.url}/api/v1/events") for _ in range(3)]
    for s in streams:
        s.next_block()
    refused = requests.get(f"{server.url}/api/v1/events", timeout=5)
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert "subscribers" in refused.json()["error"]
    t0 = time.monotonic()
    assert server.get("/api/v1/calls").status_code == 200
    answered = time.monotonic() - t0
    print(f"/calls answered in {answered * 1000:.1f} ms at the cap")
    assert answered < 0.1
    for s in streams:
        s.close()


# --------------------------------------------------------------- WebSocket

def ws_url(server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


@pytest.mark.checklist(19, 21)
def test_ws_ingest_acks_in_order_and_survives_bad_frames(live_server):
    server = live_server()
    ws = websocket.create_connection(ws_url(server, "/api/v1/ingest/ws"), timeout=10)
    for i in range(100):
        ws.send(json.dumps({**line_event("WS1", f"line {i}"), "id": f"ws-{i}"}))
    acks = [json.loads(ws.recv()) for _ in range(100)]
    assert all(a["ok"] for a in acks)
    seqs = [a["seq"] for a in acks]
    assert seqs == sorted(seqs) and len(set(seqs)) == 100
    ws.send("{not json")
    assert json.loads(ws.recv())["ok"] is False
    ws.send(json.dumps({"type": "turn", "data": {"call_id": 123}}))
    error = json.loads(ws.recv())
    assert error["ok"] is False and {d["field"] for d in error["details"]} >= {"data.call_id"}
    ws.send(json.dumps({**line_event("WS1", "line 0"), "id": "ws-0"}))  # replay
    assert json.loads(ws.recv())["duplicate"] is True
    ws.close()
    call = server.get("/api/v1/calls/WS1").json()["data"]
    assert [ln["text"] for ln in call["transcript"]] == [f"line {i}" for i in range(100)]
    assert "ConcurrentObjectUseError" not in server.logs() and "Traceback" not in server.logs()


@pytest.mark.checklist(18)
def test_ws_oversize_message_closes_1009_and_changes_nothing(live_server):
    server = live_server(PATTER_DASH_WS_MAX_MESSAGE="10000")
    other = websocket.create_connection(ws_url(server, "/api/v1/ingest/ws"), timeout=10)
    ws = websocket.create_connection(ws_url(server, "/api/v1/ingest/ws"), timeout=10)
    before = server.get("/api/v1/health").json()["events"]["accepted"]
    ws.send(json.dumps(line_event("BIG", "z" * 12000)))
    opcode, frame = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame[:2], "big") == 1009
    other.send(json.dumps(start_event("STILL")))
    assert json.loads(other.recv())["ok"] is True
    assert server.get("/api/v1/health").json()["events"]["accepted"] == before + 1
    assert server.get("/api/v1/calls/BIG").status_code == 404


@pytest.mark.checklist(17)
def test_ws_auth_is_checked_before_the_upgrade(live_server):
    server = live_server(PATTER_DASH_TOKEN="s3cret-token")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url(server, "/api/v1/ingest/ws"), timeout=5)
    assert refused.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException) as foreign:
        websocket.create_connection(ws_url(server, "/api/v1/ingest/ws"), timeout=5, origin="https://evil.example")
    assert foreign.value.status_code == 403
    ws = websocket.create_connection(
        ws_url(server, "/api/v1/ingest/ws"), timeout=5, header=["Authorization: Bearer s3cret-token"]
    )
    ws.send(json.dumps(start_event("AUTH")))
    assert json.loads(ws.recv())["ok"] is True
    ws.close()


@pytest.mark.checklist(20)
def test_ws_peer_that_stops_answering_pings_is_closed(live_server):
    server = live_server(PATTER_DASH_WS_PING_INTERVAL="0.5")
    ws = websocket.create_connection(ws_url(server, "/api/v1/ws"), timeout=10, skip_utf8_validation=True)
    wait_for(lambda: subscribers(server) == 1)
    # websocket-client answers pings only while we read; by not reading, we play dead.
    t0 = time.monotonic()
    wait_for(lambda: subscribers(server) == 0, timeout=3)
    dropped = time.monotonic() - t0
    print(f"dead peer dropped after {dropped:.2f} s")
    assert dropped < 2 * 0.5 + 0.5  # two ping intervals, plus the health poll's own latency
    ws.close()


def test_ws_live_feed_carries_events_with_ids_and_resume(live_server):
    server = live_server()
    ws = websocket.create_connection(ws_url(server, "/api/v1/ws?types=call_start"), timeout=10)
    wait_for(lambda: subscribers(server) == 1)
    server.post_events([start_event("L1"), line_event("L1", "skip me"), start_event("L2")])
    frames = [json.loads(ws.recv()) for _ in range(2)]
    assert [f["data"]["call_id"] for f in frames] == ["L1", "L2"] and frames[0]["id"] < frames[1]["id"]
    ws.close()
    resumed = websocket.create_connection(ws_url(server, f"/api/v1/ws?last_event_id={frames[0]['id']}"), timeout=10)
    assert json.loads(resumed.recv())["event"] == "transcript"
    resumed.close()


def test_frames_carry_what_their_event_changed(live_server):
    """Lifecycle frames carry the whole summary; a line or a turn carries itself and the card fields it moves."""
    server = live_server()
    sse = SSEClient(f"{server.url}/api/v1/events")
    sse.next_block()
    now = time.time()
    turn = {"turn_index": 1, "user_text": "Yes.", "agent_text": "Great, booked.", "timestamp": now + 1,
            "latency": {"agent_response_ms": 700.0}}
    server.post_events([
        start_event("F1", caller="+15550000001"),
        {"type": "transcript", "data": {"call_id": "F1", "role": "user", "text": "Yes.", "timestamp": now}},
        {"type": "turn", "data": {"call_id": "F1", "turn": turn, "cost_so_far": {"stt": 0.001, "total": 0.001}}},
        {"type": "call_end", "data": {"call_id": "F1"}},
    ])
    start, line, turned, end = (sse.next_event()["data"] for _ in range(4))
    sse.close()
    assert start["call"]["caller"] == "+15550000001" and "started_at" in start["call"]
    assert line["line"] == {"role": "user", "text": "Yes.", "timestamp": now}
    assert set(line["call"]) == {"call_id", "status", "flags"}
    # The user's words came as a line first: the turn adds only the agent's.
    assert [(x["role"], x["text"]) for x in turned["lines"]] == [("assistant", "Great, booked.")]
    assert turned["turn"]["turn_index"] == 1 and turned["cost_so_far"]["total"] == 0.001
    assert turned["call"]["turn_count"] == 1 and turned["call"]["latency_avg_ms"] == 700.0
    assert turned["call"]["cost"]["total"] == 0.001 and "caller" not in turned["call"]
    assert end["call"]["status"] == "completed" and end["call"]["caller"] == "+15550000001"
