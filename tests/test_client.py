"""DashboardClient against a small real ingest server running in a thread."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import gc
import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import PAYLOADS

from patter_dash.run.client import DashboardClient


class Store:
    """What the ingest side remembers; shared across server restarts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        self.duplicates = 0
        self.requests: list[tuple[int, int]] = []  # (status, events in body)

    def add(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        accepted = []
        for event in events:
            duplicate = event.get("id") in self.ids
            if duplicate:
                self.duplicates += 1
            else:
                self.ids.add(event["id"])
                self.events.append(event)
            accepted.append({"seq": len(self.events), "duplicate": duplicate})
        return accepted

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)


class IngestServer:
    """Just enough of POST /api/v1/ingest: dedupe by id, bearer token, 413, injected 503s."""

    def __init__(self, port: int = 0, *, store: Store | None = None, token: str | None = None,
                 fail_first: int = 0, fail_status: int = 503, store_failed: bool = False,
                 max_body: int | None = None) -> None:
        self.store = store or Store()
        self.fail_left = fail_first
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: dict[str, Any], n: int) -> None:
                with server.store.lock:
                    server.store.requests.append((status, n))
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/api/v1/ingest":
                    return self.answer(404, {"error": "not found"}, 0)
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    return self.answer(401, {"error": "unauthorized"}, 0)
                if max_body and len(body) > max_body:
                    return self.answer(413, {"error": "body too large"}, 0)
                events = json.loads(body)["events"]
                with server.store.lock:
                    failing = server.fail_left > 0
                    server.fail_left -= failing
                    if failing and store_failed:  # stored, but the answer is lost: the client must retry
                        server.store.add(events)
                if failing:
                    return self.answer(fail_status, {"error": "queue full"}, len(events))
                bad = [i for i, e in enumerate(events) if e.get("type") == "bogus"]
                if bad:
                    return self.answer(400, {"error": "invalid event", "details": bad}, len(events))
                with server.store.lock:
                    accepted = server.store.add(events)
                self.answer(202, {"accepted": accepted}, len(events))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def servers():
    started: list[IngestServer] = []

    def start(*args: Any, **kwargs: Any) -> IngestServer:
        started.append(IngestServer(*args, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def clients():
    made: list[DashboardClient] = []

    def make(url: str, **kwargs: Any) -> DashboardClient:
        kwargs.setdefault("flush_interval", 0.05)
        made.append(DashboardClient(url, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close(timeout=0.5)


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_delivers_everything_in_order_in_bounded_batches(servers, clients) -> None:
    server = servers()
    client = clients(server.url, batch_size=50)
    for i in range(500):
        assert client.feed("transcript", {"call_id": "CA1", "role": "user", "text": f"line {i}"})
    assert client.feed("call_end", {"call_id": "CA1"}, id="my-key")
    assert client.flush(10)
    events = server.store.snapshot()
    assert [e["data"].get("text") for e in events[:-1]] == [f"line {i}" for i in range(500)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", e["id"]) for e in events[:-1])
    assert events[-1] == {"type": "call_end", "data": {"call_id": "CA1"}, "id": "my-key"}
    sizes = [n for status, n in server.store.requests]
    assert max(sizes) <= 50 and len(sizes) >= 11
    assert (client.sent, client.pending, client.retries, client.dropped, client.rejected) == (501, 0, 0, 0, 0)


def test_small_batches_go_out_after_flush_interval(servers, clients) -> None:
    server = servers()
    client = clients(server.url, batch_size=200, flush_interval=0.05)
    for kind in ("call_start", "transcript", "turn"):
        client.feed(kind, {"call_id": "CA2"})
    assert wait_until(lambda: len(server.store.snapshot()) == 3, timeout=2)
    assert server.store.requests == [(202, 3)]


@pytest.mark.parametrize("store_failed", [False, True], ids=["refused", "ack-lost"])
def test_retries_503_without_losing_or_duplicating(servers, clients, store_failed: bool) -> None:
    server = servers(fail_first=3, store_failed=store_failed)
    client = clients(server.url, batch_size=40)
    ids = [f"ev-{i}" for i in range(120)]
    for event_id in ids:
        client.feed("transcript", {"call_id": "CA3", "text": event_id}, id=event_id)
    assert client.flush(10)
    assert [e["id"] for e in server.store.snapshot()] == ids
    assert client.retries == 3 and client.sent == 120 and client.rejected == 0
    assert [s for s, _ in server.store.requests[:3]] == [503, 503, 503]
    assert (server.store.duplicates > 0) == store_failed


def assert_never_waits(took: list[float]) -> None:
    """feed() only queues: nine in ten under 1 ms, none near a network wait (a loaded machine may preempt one)."""
    took = sorted(took)
    assert took[len(took) * 9 // 10] < 0.001 and took[-1] < 0.05, took[-5:]


def test_dashboard_down_then_up_loses_nothing_and_feed_stays_fast(servers, clients) -> None:
    port = free_port()
    client = clients(f"http://127.0.0.1:{port}", batch_size=20)
    took = []
    gc.disable()  # time the client, not a collector pause
    try:
        for i in range(100):
            t0 = time.perf_counter()
            assert client.feed("turn", {"call_id": "CA4", "turn": {"turn_index": i}})
            took.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    assert_never_waits(took)
    assert wait_until(lambda: client.retries >= 2, timeout=3)
    assert client.pending == 100 and client.sent == 0
    server = servers(port)
    assert client.flush(10)
    assert [e["data"]["turn"]["turn_index"] for e in server.store.snapshot()] == list(range(100))


def test_dashboard_restart_keeps_buffered_events(servers, clients) -> None:
    first = servers()
    port = first.httpd.server_address[1]
    client = clients(first.url)
    for i in range(30):
        client.feed("transcript", {"call_id": "CA5", "text": str(i)})
    assert client.flush(5)
    first.stop()
    for i in range(30, 60):
        client.feed("transcript", {"call_id": "CA5", "text": str(i)})
    assert wait_until(lambda: client.retries >= 1, timeout=3)
    servers(port, store=first.store)
    assert client.flush(10)
    assert [e["data"]["text"] for e in first.store.snapshot()] == [str(i) for i in range(60)]


def test_full_buffer_drops_new_events_and_warns_once(servers, clients, caplog) -> None:
    port = free_port()
    client = clients(f"http://127.0.0.1:{port}", buffer_size=50, batch_size=10)
    caplog.set_level(logging.WARNING, logger="patter_dash.run.client")
    took = []
    results = []
    gc.disable()
    try:
        for i in range(80):
            t0 = time.perf_counter()
            results.append(client.feed("transcript", {"call_id": "CA6", "text": str(i)}))
            took.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    assert results == [True] * 50 + [False] * 30
    assert_never_waits(took)
    assert client.dropped == 30 and client.pending == 50
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    server = servers(port)
    assert client.flush(10)
    assert [e["data"]["text"] for e in server.store.snapshot()] == [str(i) for i in range(50)]


@dataclasses.dataclass(frozen=True)
class LatencyBreakdown:
    stt_ms: float = 0.0
    llm_ms: float = 0.0
    bargein_ms: float | None = None


@dataclasses.dataclass(frozen=True)
class TurnMetrics:
    turn_index: int
    user_text: str
    agent_text: str
    latency: LatencyBreakdown


@dataclasses.dataclass(frozen=True)
class CostBreakdown:
    stt: float = 0.0
    total: float = 0.0


@dataclasses.dataclass(frozen=True)
class CallMetrics:
    call_id: str
    turns: tuple[TurnMetrics, ...]
    cost: CostBreakdown


def test_dataclasses_and_tuples_arrive_as_plain_json(servers, clients) -> None:
    server = servers()
    client = clients(server.url)
    turn = TurnMetrics(1, "hi", "hello", LatencyBreakdown(111.9, 221.9))
    metrics = CallMetrics("CA7", (TurnMetrics(0, "", "greeting", LatencyBreakdown()), turn), CostBreakdown(0.1, 0.1))
    client.feed("turn", {"call_id": "CA7", "turn": turn, "cost_so_far": CostBreakdown(), "llm_ttft_ms": 221.9})
    client.feed("call_end", {"call_id": "CA7", "metrics": metrics, "transcript": ({"role": "user", "text": "hi"},)})
    client.feed("call_status", CostBreakdown(1.0, 2.0))  # a bare dataclass as data
    history = [{"role": "user", "text": "one"}]
    client.feed("transcript", {"call_id": "CA7", "history": history})
    history.append({"role": "assistant", "text": "later"})  # the caller keeps mutating its own list
    client.feed("transcript", {"call_id": "CA7", "when": datetime.date(2026, 1, 2)})  # not JSON: sent as str
    assert client.flush(5)
    received = [e["data"] for e in server.store.snapshot()]
    assert received[0] == {"call_id": "CA7", "turn": {
        "turn_index": 1, "user_text": "hi", "agent_text": "hello",
        "latency": {"stt_ms": 111.9, "llm_ms": 221.9, "bargein_ms": None}},
        "cost_so_far": {"stt": 0.0, "total": 0.0}, "llm_ttft_ms": 221.9}
    assert received[1]["metrics"]["turns"][1]["latency"]["stt_ms"] == 111.9
    assert [t["turn_index"] for t in received[1]["metrics"]["turns"]] == [0, 1]
    assert received[1]["transcript"] == [{"role": "user", "text": "hi"}]
    assert received[2] == {"stt": 1.0, "total": 2.0}
    assert received[3]["history"] == [{"role": "user", "text": "one"}]
    assert received[4]["when"] == "2026-01-02"


def test_feed_never_raises_on_unconvertible_data(clients) -> None:
    @dataclasses.dataclass
    class Holder:
        lock: Any

    client = clients(f"http://127.0.0.1:{free_port()}")
    assert client.feed("turn", Holder(threading.Lock())) is False  # asdict cannot deep-copy a lock
    assert client.pending == 0


def test_413_splits_the_batch_and_rejects_a_single_oversized_event(servers, clients) -> None:
    server = servers(max_body=6000)
    client = clients(server.url, batch_size=100)
    for i in range(100):
        client.feed("transcript", {"call_id": "CA8", "text": f"{i:03d} " + "x" * 200})
    assert client.flush(10)
    assert [e["data"]["text"][:3] for e in server.store.snapshot()] == [f"{i:03d}" for i in range(100)]
    assert 413 in [s for s, _ in server.store.requests]
    assert max(n for s, n in server.store.requests if s == 202) < 100
    assert client.rejected == 0 and client.sent == 100

    client.feed("transcript", {"call_id": "CA8", "text": "y" * 7000})
    client.feed("transcript", {"call_id": "CA8", "text": "after"})
    assert client.flush(10)
    assert client.rejected == 1 and client.sent == 101
    assert server.store.snapshot()[-1]["data"]["text"] == "after"


def test_other_4xx_drops_the_batch_and_moves_on(servers, clients, caplog) -> None:
    server = servers(token="s3cret")
    wrong = clients(server.url, token="nope")
    wrong.feed("call_start", {"call_id": "CA9"})
    assert wrong.flush(5)
    assert wrong.rejected == 1 and wrong.sent == 0 and wrong.retries == 0
    assert any("401" in r.getMessage() for r in caplog.records)

    right = clients(server.url, token="s3cret")
    right.feed("bogus", {"call_id": "CA9"})
    assert right.flush(5)
    right.feed("call_start", {"call_id": "CA9"})
    assert right.flush(5)
    assert right.rejected == 1 and right.sent == 1
    assert [e["type"] for e in server.store.snapshot()] == ["call_start"]


def test_one_invalid_event_does_not_sink_its_batch(servers, clients) -> None:
    server = servers()
    client = clients(server.url, batch_size=16, flush_interval=10)
    for i in range(16):
        client.feed("bogus" if i == 5 else "transcript", {"call_id": "CA9", "text": str(i)})
    assert client.flush(10)
    assert client.rejected == 1 and client.sent == 15
    assert [e["data"]["text"] for e in server.store.snapshot()] == [str(i) for i in range(16) if i != 5]


def test_close_flushes_stops_and_refuses_later_events(servers, clients) -> None:
    server = servers()
    client = DashboardClient(server.url, flush_interval=10)  # only close() can make it send
    client.feed("call_start", {"call_id": "CA10"})
    assert client.close(timeout=5) is True
    assert len(server.store.snapshot()) == 1
    assert not client._thread.is_alive()
    assert client.feed("call_end", {"call_id": "CA10"}) is False


def test_close_gives_up_after_timeout_when_dashboard_is_down() -> None:
    client = DashboardClient(f"http://127.0.0.1:{free_port()}")
    client.feed("call_start", {"call_id": "CA11"})
    t0 = time.monotonic()
    assert client.close(timeout=0.5) is False
    assert time.monotonic() - t0 < 1.5
    assert client.pending == 1


def test_urls() -> None:
    c = DashboardClient("https://dash.example/patter/", transport="ws")
    try:
        assert c.http_url == "https://dash.example/patter/api/v1/ingest"
        assert c.ws_url == "wss://dash.example/patter/api/v1/ingest/ws"
        assert DashboardClient("http://h:1/api/v1/ingest").http_url == "http://h:1/api/v1/ingest"
    finally:
        c.close(0)
    with pytest.raises(ValueError):
        DashboardClient("http://h", transport="smtp")  # type: ignore[arg-type]


def test_patter_callbacks_feed_the_remote_dashboard(servers, clients) -> None:
    server = servers()
    client = clients(server.url)
    callbacks = client.patter_callbacks()
    assert {"on_call_start", "on_transcript", "on_metrics", "on_call_end"} <= set(callbacks)
    for name, payload in (("on_call_start", "call_start"), ("on_transcript", "transcript_user"),
                          ("on_metrics", "turn_metrics"), ("on_call_end", "call_end")):
        asyncio.run(callbacks[name](json.loads((PAYLOADS / f"{payload}.json").read_text())))
    assert client.flush(5)
    received = server.store.snapshot()
    assert len(received) == 4
    assert {e["data"]["call_id"] for e in received} == {"CA941522e75e5447c05b6ca6d201f13845"}
