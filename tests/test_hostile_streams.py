"""Hostile use of the streaming routes (issue 10, items 1, 3 and 9 in part).

Against real gunicorn + gevent: requests that are never read, clients that
leave before, during or after the first byte, rows that cannot be encoded,
bodies that fail, and spreadsheet formulas hidden behind invisible characters.
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import struct
import time
import unicodedata
from pathlib import Path

import pytest
import requests
import websocket  # websocket-client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_for
from tests.sse import SSEClient

EXPORTS = ("/api/v1/export/csv", "/api/v1/export/json", "/api/v1/export/json?format=ndjson")
STREAMS = ("/api/v1/events", "/api/v1/ws", *EXPORTS)
FOREIGN = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}


def health(server) -> dict:
    return server.get("/api/v1/health").json()


def subscribers(server) -> int:
    return health(server)["subscribers"]["count"]


def settled(server, subs: int = 0, exports: int = 0, timeout: float = 4.0) -> float:
    """Seconds until health shows ``subs`` subscribers and ``exports`` open exports (fails after ``timeout``)."""
    t0 = time.monotonic()
    wait_for(
        lambda: (h := health(server))["subscribers"]["count"] == subs and h["export"]["open"] == exports,
        timeout=timeout,
        interval=0.05,
    )
    return time.monotonic() - t0


def ended(call_id: str, i: int = 0, text: str = "", **fields) -> dict:
    data = {
        "call_id": call_id,
        "caller": f"+1555{i:07d}",
        "callee": "+15550001234",
        "direction": "inbound",
        "ended_at": 1_780_000_000.0 + 60 * i + 30.5,
        "metrics": {"duration_seconds": 30.5, "cost": {"total": 0.25}},
        **fields,
    }
    if text:  # bulk for every format: the transcript (JSON) and the numbers (CSV), at most 256 each
        data["conversation_history"] = [{"role": "user", "text": text}]
        data["caller"] = data["callee"] = text[:256]
    return {"type": "call_end", "data": data}


def fill(server, n: int, text: str = "", prefix: str = "C") -> list[str]:
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    for start in range(0, n, 500):
        server.post_events([ended(ids[i], i, text) for i in range(start, min(n, start + 500))])
    wait_for(lambda: health(server)["store"]["completed"] >= n, timeout=10)
    return ids


def raw_request(server, path: str, method: str = "GET", headers: dict | None = None, rcvbuf: int | None = None) -> socket.socket:
    """A request on a bare socket, so the test decides when (and how) the client leaves."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", server.port))
    lines = [f"{method} {server.prefix}{path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in {**server.headers, **(headers or {})}.items()]
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return s


def read_some(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_until(s: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed before {marker!r}: {data[-300:]!r}"
        data += chunk
    return data


def hard_close(s: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a crashed client or a killed tab does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def ws_url(server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


# ------------------------------------------------- requests that are never read


def test_head_and_other_methods_on_every_stream_route_hold_nothing(live_server):
    server = live_server(PATTER_DASH_MAX_SUBSCRIBERS="5")
    fill(server, 5)
    for i in range(50):
        headers = FOREIGN if i % 2 else {}
        r = requests.head(f"{server.url}/api/v1/events", headers=headers, timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream"), r.status_code
        assert r.headers["Cache-Control"] == "no-cache"
    for path in EXPORTS:
        for headers in ({}, FOREIGN):
            r = requests.head(server.url + path, headers=headers, timeout=5)
            assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment;"), path
    for path in STREAMS:
        for method in ("OPTIONS", "POST", "PUT", "DELETE", "PATCH", "HEAD"):
            r = requests.request(method, server.url + path, headers=FOREIGN, timeout=5)
            assert r.status_code < 500, (method, path, r.status_code)
    assert settled(server) < 4
    # All five slots are still there for real viewers: SSE and live WebSocket.
    streams = [SSEClient(f"{server.url}/api/v1/events") for _ in range(4)]
    for s in streams:
        assert s.status == 200
        assert s.next_block(time.monotonic() + 5).startswith("retry: ")
    ws = websocket.create_connection(ws_url(server, "/api/v1/ws"), timeout=10)
    wait_for(lambda: subscribers(server) == 5)
    server.post_events([ended("VIEWED", 99)])
    assert json.loads(ws.recv())["data"]["call_id"] == "VIEWED"
    assert all(s.next_event()["data"]["call_id"] == "VIEWED" for s in streams)
    ws.close()
    for s in streams:
        s.close()
    assert settled(server) < 4


def test_head_flood_then_a_viewer_subscribes_with_the_cap_at_5(live_server):
    server = live_server(PATTER_DASH_MAX_SUBSCRIBERS="5")
    for _ in range(50):
        s = raw_request(server, "/api/v1/events", "HEAD", FOREIGN)
        head = read_some(s, 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        s.close()
    assert subscribers(server) == 0
    viewer = SSEClient(f"{server.url}/api/v1/events")
    assert viewer.status == 200 and viewer.next_block(time.monotonic() + 5).startswith("retry: ")
    viewer.close()
    ws = websocket.create_connection(ws_url(server, "/api/v1/ws"), timeout=10)
    wait_for(lambda: subscribers(server) == 1)
    ws.close()


# ---------------------------------------------- clients that leave at any point


@pytest.mark.parametrize("close", [socket.socket.close, hard_close], ids=["fin", "reset"])
def test_sse_clients_leaving_before_during_or_after_the_first_byte_free_their_slot(live_server, close):
    # The default 15 s heartbeat: a client that left must not wait for it.
    server = live_server(PATTER_DASH_MAX_SUBSCRIBERS="5")
    timings = []
    for _ in range(6):  # more rounds than slots: a single leak would show
        # before the first byte: the request is sent and the client is gone
        close(raw_request(server, "/api/v1/events", headers=FOREIGN))
        # after the first byte
        s = raw_request(server, "/api/v1/events")
        read_until(s, b"retry: ")
        close(s)
        # mid-stream, with events flowing
        s = raw_request(server, "/api/v1/events?last_event_id=0")
        read_until(s, b"retry: ")
        server.post_events([{"type": "call_start", "data": {"call_id": f"M{i}"}} for i in range(20)])
        read_until(s, b"event: call_start")
        close(s)
        # the request line only, then gone
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(f"GET {server.prefix}/api/v1/events HTTP/1.1\r\n".encode())
        close(s)
        timings.append(settled(server))
    print(f"slots freed after {max(timings):.2f} s at worst (heartbeat 15 s)")
    assert max(timings) < 3
    viewers = [SSEClient(f"{server.url}/api/v1/events") for _ in range(5)]
    assert all(v.status == 200 for v in viewers)
    for v in viewers:
        v.close()


def test_live_websocket_peers_leaving_at_any_point_free_their_slot(live_server):
    # Ping interval 20 s (the default): a peer that left is noticed long before.
    server = live_server(PATTER_DASH_MAX_SUBSCRIBERS="5")
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    timings = []
    for _ in range(6):
        # the upgrade request sent, the client gone before the handshake answer
        hard_close(raw_request(server, "/api/v1/ws", headers=upgrade))
        # handshake done, then a TCP close without a close frame
        s = raw_request(server, "/api/v1/ws", headers=upgrade)
        assert read_some(s, 12).startswith(b"HTTP/1.1 101")
        s.close()
        # a proper close after some events
        ws = websocket.create_connection(ws_url(server, "/api/v1/ws?last_event_id=0"), timeout=10)
        server.post_events([{"type": "call_start", "data": {"call_id": f"W{i}"}} for i in range(5)])
        ws.recv()
        ws.close()
        # mid-stream, reset
        ws = websocket.create_connection(ws_url(server, "/api/v1/ws?last_event_id=0"), timeout=10)
        ws.recv()
        hard_close(ws.sock)
        timings.append(settled(server))
    print(f"WebSocket slots freed after {max(timings):.2f} s at worst (ping interval 20 s)")
    assert max(timings) < 3
    conns = [websocket.create_connection(ws_url(server, "/api/v1/ws"), timeout=10) for _ in range(5)]
    wait_for(lambda: subscribers(server) == 5)
    for c in conns:
        c.close()


@pytest.mark.parametrize("path", EXPORTS)
def test_export_clients_leaving_at_any_point_release_the_snapshot(live_server, path):
    server = live_server(PATTER_DASH_MAX_SUBSCRIBERS="5")
    fill(server, 8000, text="x" * 600)  # over 5 MB in any format: far more than the socket buffers
    # A client that stops reading: the export is open (it holds its snapshot)...
    stuck = raw_request(server, path, rcvbuf=4096)
    read_some(stuck, 1)
    wait_for(lambda: health(server)["export"]["open"] == 1, timeout=5)
    time.sleep(0.5)
    assert health(server)["export"]["open"] == 1  # still stuck in a write, still counted
    # ...and released as soon as the client leaves.
    hard_close(stuck)
    assert settled(server) < 4
    for close in (socket.socket.close, hard_close):
        close(raw_request(server, path, headers=FOREIGN))  # before the first byte
        s = raw_request(server, path)
        read_some(s, 1)  # after the first byte
        close(s)
        s = raw_request(server, path)
        read_some(s, 300_000)  # mid-stream
        close(s)
        close(raw_request(server, path, "HEAD"))
    assert settled(server) < 4
    full = server.get(path)
    assert full.status_code == 200 and len(full.content) > 5_000_000
    assert settled(server) < 4


# ------------------------------------------------- rows and bodies that fail

#: A test-only gunicorn config: the shipped one, plus a route (outside the
#: dashboard's blueprint) that breaks stored calls below the validator.
PLUGIN = '''
from patter_dash.run.server import SETTINGS, on_starting
from patter_dash.run.server import post_worker_init as shipped_post_worker_init

globals().update(SETTINGS)


class Poison:
    """A field value no encoder can handle."""

    def __str__(self):
        raise RuntimeError("poisoned field")

    __repr__ = __str__


class Exploding(list):
    """A snapshot that fails after its first batch (the export encodes 100 calls a batch)."""

    def __iter__(self):
        for i, call in enumerate(list.__iter__(self)):
            if i == 150:
                raise RuntimeError("snapshot exploded mid-way")
            yield call


def post_worker_init(worker):
    shipped_post_worker_init(worker)
    from flask import jsonify, request

    app = worker.wsgi
    dash = app.extensions["patter_dash"]

    def poison():
        body = request.get_json()
        if body["what"] == "row":
            for call_id in body["call_ids"]:
                dash.store.get(call_id).caller = Poison()
        elif body["what"] == "snapshot":
            def broken(*args):
                raise RuntimeError("snapshot failed")
            dash.pipeline.history.batches = broken
        elif body["what"] == "snapshot-midway":
            history = dash.pipeline.history
            real = type(history).batches.__get__(history)
            # The export's calls (memory's window, then disk pages) as one batch that explodes.
            history.batches = lambda *args: [Exploding(c for batch in real(*args) for c in batch)]
        elif body["what"] == "hub":
            hub = dash.pipeline.hub
            real_read = type(hub).read.__get__(hub)
            calls = []
            def read(sub, timeout):
                calls.append(1)
                if len(calls) > 1:
                    raise RuntimeError("hub read failed")
                return real_read(sub, timeout)
            hub.read = read
        return jsonify(ok=True)

    app.add_url_rule("/test-only/poison", "test_only_poison", poison, methods=["POST"])
'''

ACCESS_NONE = re.compile(r'"[A-Z]+ None ')


def plugin_server(live_server, tmp_path: Path, **config):
    conf = tmp_path / "gunicorn-test-plugin.conf.py"
    conf.write_text(PLUGIN)
    return live_server(["-c", str(conf)], **config)


def poison(server, **body) -> None:
    assert requests.post(f"{server.origin}/test-only/poison", json=body, timeout=5).json() == {"ok": True}


def test_rows_that_cannot_be_encoded_are_skipped_counted_and_the_body_stays_well_formed(live_server, tmp_path):
    server = plugin_server(live_server, tmp_path)
    ids = fill(server, 450)  # three batches of 200
    bad = {ids[449], ids[100], ids[0]}  # the newest (first row out), one in the first batch, the oldest
    poison(server, what="row", call_ids=sorted(bad))
    good = set(ids) - bad

    response = server.get("/api/v1/export/csv")  # requests raises if the chunked body is cut
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode(), newline="")))
    assert {r["call_id"] for r in rows} == good and len(rows) == len(good)
    assert response.content.endswith(b"\r\n")

    array = server.get("/api/v1/export/json")
    assert array.status_code == 200
    assert {c["call_id"] for c in json.loads(array.content)} == good

    lines = server.get("/api/v1/export/json?format=ndjson")
    assert lines.status_code == 200 and lines.content.endswith(b"\n")
    assert {json.loads(line)["call_id"] for line in lines.content.decode().splitlines()} == good

    h = health(server)
    assert h["export"] == {"open": 0, "row_errors": 3 * len(bad), "failed": 0}
    logs = server.logs()
    assert logs.count("export skipped call") == 3  # one traceback per export, not per row
    assert "csv export skipped 3 row(s)" in logs and "ndjson export skipped 3 row(s)" in logs
    assert not ACCESS_NONE.search(logs)
    for path in ("/api/v1/export/csv", "/api/v1/export/json", "/api/v1/export/json"):
        assert f'"GET {path} HTTP/1.1" 200' in logs


def test_a_failing_stream_is_logged_with_method_and_path_and_cut_visibly(live_server, tmp_path):
    server = plugin_server(live_server, tmp_path, PATTER_DASH_HEARTBEAT="0.2")
    fill(server, 450)

    # before the first byte: the snapshot is taken before the answer starts, so it is an answer, not a cut
    poison(server, what="snapshot")
    refused = server.get("/api/v1/export/csv")
    assert refused.status_code == 500 and refused.json() == {"error": "internal error"}

    # mid-way: the client must see a cut body, never a short file that looks whole
    server2 = plugin_server(live_server, tmp_path)
    fill(server2, 450)
    poison(server2, what="snapshot-midway")
    for path in EXPORTS:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            server2.get(path).content

    # a live stream whose read fails after the first wait
    poison(server, what="hub")
    sse = SSEClient(f"{server.url}/api/v1/events")
    assert sse.next_block(time.monotonic() + 5).startswith("retry: ")
    deadline = time.monotonic() + 5
    while (block := sse.next_block(deadline)) is not None:  # cut, not hanging
        assert block == ": heartbeat"
    assert settled(server) < 4

    logs, logs2 = server.logs(), server2.logs()
    for text in (logs, logs2):
        assert not ACCESS_NONE.search(text), ACCESS_NONE.search(text)
        assert "Error handling request" not in text  # nothing raised into gunicorn
    assert "unexpected error on GET /api/v1/export/csv" in logs
    assert '"GET /api/v1/export/csv HTTP/1.1" 500' in logs
    assert "GET /api/v1/events failed while streaming" in logs
    assert '"GET /api/v1/events HTTP/1.1" 200' in logs
    for path in ("/api/v1/export/csv", "/api/v1/export/json"):
        assert f"GET {path} failed while streaming" in logs2
        assert re.search(rf'"GET {re.escape(path)} HTTP/1.1" 200 [1-9]', logs2), path  # some bytes went out
    assert health(server)["export"]["failed"] == 0 and health(server2)["export"]["failed"] == 3
    assert health(server2)["export"]["open"] == 0


# ------------------------------------------------------------ CSV formula guard

INVISIBLE = [
    " ", "\u00a0", "\u2007", "\u202f", "\u2009", "\u3000", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff",
    "\u00ad", "\u180e", "\u2028", "\u2029", "\t", "\r", "\n", "\x0b", "\x0c", "\x1f", "\u034f", "\ufe0f",
    "\u3164", "\u115f", "\u2800", "\U000e0020", "\u061c", "\u200e", "\u202e",
]
TRIGGERS = ["=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\ufe66", "\ufe62", "\ufe63", "\ufe6b", "\u207c", "\u208a"]
STRIP_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "Cn", "Co", "Cs", "Mn", "Me"}


def visible(cell: str) -> str:
    """What a spreadsheet sees first: NFKC, then leading spaces and invisible characters skipped."""
    text = unicodedata.normalize("NFKC", cell)
    i = 0
    while i < len(text) and (
        text[i].isspace() or unicodedata.category(text[i]) in STRIP_CATEGORIES or text[i] in "\u115f\u1160\u3164\uffa0\u2800"
    ):
        i += 1
    return text[i:]


hidden_formula = st.builds(
    lambda prefix, trigger, rest: "".join(prefix) + trigger + rest,
    st.lists(st.sampled_from(INVISIBLE), max_size=4),
    st.sampled_from(TRIGGERS),
    st.text(max_size=12),
)
anything = st.text(max_size=16)


@pytest.fixture(scope="module")
def formula_client():
    from patter_dash.run.app import create_app

    app = create_app({"TESTING": True, "PATTER_DASH_MAX_CALLS": 100_000})
    yield app.test_client()
    app.extensions["patter_dash"].stop()


COUNTER = iter(range(10**9))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(hidden_formula, anything), min_size=1, max_size=8))
def test_no_csv_text_cell_starts_a_formula_even_behind_invisible_characters(formula_client, values):
    batch = f"hx{next(COUNTER):06d}x"
    events = [
        ended(f"{batch}-{i}", i, caller=v, callee=v, metrics={"provider_mode": v, "duration_seconds": 30.5, "cost": {"total": 1.5}})
        for i, v in enumerate(values)
    ]
    assert formula_client.post("/api/v1/ingest", json={"events": events}).status_code in (200, 202)
    body = formula_client.get(f"/api/v1/export/csv?q={batch}").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body, newline="")))
    header, rows = rows[0], rows[1:]
    assert len(rows) == len(values)
    numeric = {header.index(c) for c in ("duration_seconds", "cost_total", "turn_count")}
    for row in rows:
        for col, cell in enumerate(row):
            if col in numeric:
                float(cell)  # numbers stay numbers, never prefixed
                continue
            assert cell.startswith("'") or not visible(cell).startswith(("=", "+", "-", "@")), (header[col], cell)
        assert float(row[header.index("cost_total")]) == 1.5


def test_formula_guard_examples(formula_client):
    cases = {
        " =1+1": "' =1+1",
        "\u00a0+15551234567": "'\u00a0+15551234567",
        "\u200b=cmd": "'\u200b=cmd",
        "\ufeff@SUM(A1)": "'\ufeff@SUM(A1)",
        "\u3000-2": "'\u3000-2",
        "\uff1dHYPERLINK(\"x\")": "'\uff1dHYPERLINK(\"x\")",
        "\uff0b1": "'\uff0b1",
        "\uff20x": "'\uff20x",
        "\uff0d1": "'\uff0d1",
        "  plain": "  plain",
        "a=b": "a=b",
        "\u3000text": "\u3000text",
    }
    events = [ended(f"fx-{i}", i, caller=text) for i, text in enumerate(cases)]
    assert formula_client.post("/api/v1/ingest", json={"events": events}).status_code in (200, 202)
    rows = {r["call_id"]: r for r in csv.DictReader(io.StringIO(formula_client.get("/api/v1/export/csv?q=fx-").get_data(as_text=True), newline=""))}
    for i, (text, expected) in enumerate(cases.items()):
        assert rows[f"fx-{i}"]["caller"] == expected, text
