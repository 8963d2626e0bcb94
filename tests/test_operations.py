"""Process model, chaos and load: what production does to a dashboard (release checklist)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_for
from tests.nginx import nginx
from tests.procinfo import open_sockets, reset_peak, status
from tests.sse import SSEClient, open_streams

FULL = os.environ.get("PATTER_DASH_FULL") == "1"


def light_call(i: int, now: float) -> list[dict]:
    call_id = f"CA{i:032x}"
    return [
        {"type": "call_start", "data": {"call_id": call_id, "caller": f"+1555{i:07d}", "callee": "+15550001234", "direction": "inbound"}},
        {"type": "call_end", "data": {
            "call_id": call_id, "ended_at": now - 50_000 + i,
            "transcript": [{"role": "user", "text": f"hello {i}"}, {"role": "assistant", "text": "hi, how can I help?"}],
            "metrics": {"duration_seconds": 30.0 + i % 60, "provider_mode": "pipeline",
                        "cost": {"stt": 0.001, "tts": 0.002, "llm": 0.0005, "telephony": 0.0085, "total": 0.012},
                        "latency_avg": {"agent_response_ms": 400.0 + i % 300}},
        }},
    ]


def preload(server, n: int, batch: int = 1000) -> None:
    now = time.time()
    for start in range(0, n, batch):
        events = [e for i in range(start, min(n, start + batch)) for e in light_call(i, now)]
        server.post_events(events)


@pytest.mark.checklist(2)
def test_fresh_venv_from_requirements_boots_gunicorn_gevent(tmp_path: Path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run([env_dir / "bin" / "pip", "install", "-q", "-r", ROOT / "requirements.txt"], check=True)
    port = free_port()
    proc = subprocess.Popen(
        [env_dir / "bin" / "gunicorn", "-k", "gevent", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PATTER_DASH_DATA_DIR": str(tmp_path / "data")},  # not the checkout's history file
    )
    try:
        health = wait_for(lambda: _get_json(f"http://127.0.0.1:{port}/api/v1/health"), timeout=30, interval=0.2)
        assert health["status"] == "ok"
    finally:
        proc.kill()
        proc.wait(5)


def _get_json(url: str):
    try:
        r = requests.get(url, timeout=1)
        return r.json() if r.status_code == 200 else None
    except requests.RequestException:
        return None


@pytest.mark.checklist(4)
def test_kill_9_of_the_worker_respawns_and_streams_reconnect(live_server):
    server = live_server()
    streams = open_streams(f"{server.url}/api/v1/events", 5)
    server.post_events([{"type": "call_start", "data": {"call_id": "BEFORE"}}])
    last_ids = [s.next_event()["id"] for s in streams]
    old_pid = server.worker_pid()
    t0 = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    for s in streams:
        assert s.next_block(time.monotonic() + 5) is None  # the stream ends
    health = wait_for(lambda: (h := _get_json(f"{server.url}/api/v1/health")) and h["pid"] != old_pid and h, timeout=5, interval=0.05)
    print(f"new worker healthy {time.monotonic() - t0:.2f} s after kill -9")
    assert health["status"] == "ok"
    # Reconnecting as EventSource does (with Last-Event-ID) lands on a new process: told to refetch.
    again = [SSEClient(f"{server.url}/api/v1/events", headers={"Last-Event-ID": str(i)}) for i in last_ids]
    assert all(a.next_event()["event"] == "reset" for a in again)
    server.post_events([{"type": "call_start", "data": {"call_id": "AFTER"}}])
    assert all(a.next_event()["data"]["call_id"] == "AFTER" for a in again)


@pytest.mark.checklist(5)
def test_sigterm_with_50_streams_ends_each_within_2_s(live_server):
    server = live_server()
    streams = open_streams(f"{server.url}/api/v1/events", 50)
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    for s in streams:
        assert s.next_event(timeout=3)["event"] == "shutdown"
        assert s.next_block(time.monotonic() + 3) is None
    ended = time.monotonic() - t0
    server.proc.wait(15)
    exited = time.monotonic() - t0
    print(f"50 streams ended in {ended:.2f} s; master exited after {exited:.2f} s (graceful_timeout 10 s)")
    assert ended < 2.0 and exited < 5.0
    # A clean stop logs no traceback (logging's handlers freed after gevent's teardown used to print one).
    assert "Traceback" not in server.logs() and "Exception ignored" not in server.logs(), server.logs()[-2000:]


@pytest.mark.checklist(6, 42)
def test_large_export_keeps_streams_and_ingest_alive(live_server):
    n = 50_000
    server = live_server(PATTER_DASH_MAX_CALLS=str(n), PATTER_DASH_HEARTBEAT="1", PATTER_DASH_MAX_BODY=str(8 << 20))
    preload(server, n)
    pid = server.worker_pid()
    streams = [SSEClient(f"{server.url}/api/v1/events", timeout=10) for _ in range(10)]
    gaps: list[float] = []
    stop = threading.Event()

    def watch(stream: SSEClient) -> None:
        last = time.monotonic()
        while not stop.is_set() and stream.next_block(time.monotonic() + 10) is not None:
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    watchers = [threading.Thread(target=watch, args=(s,), daemon=True) for s in streams]
    for w in watchers:
        w.start()
    time.sleep(1.5)
    bodies = {}
    for fmt, path in (("csv", "/api/v1/export/csv"), ("json", "/api/v1/export/json")):
        reset_peak(pid)
        rss_before = status(pid, "VmRSS")
        t0 = time.monotonic()
        response = requests.get(server.url + path, stream=True, timeout=60)
        body = bytearray()
        first_byte = None
        ingested = 0
        for chunk in response.iter_content(chunk_size=65536):
            if first_byte is None:
                first_byte = time.monotonic() - t0
            body += chunk
            if ingested < 5 and len(body) > (ingested + 1) * 2_000_000:
                # ingest during the export: evicts old calls, must not truncate the snapshot
                server.post_events(light_call(n + 1000 + ingested, time.time()))
                ingested += 1
        growth = (status(pid, "VmHWM") - rss_before) / 2**20
        print(f"{fmt}: {len(body) / 2**20:.1f} MB, first byte {first_byte * 1000:.0f} ms, "
              f"{time.monotonic() - t0:.2f} s, peak RSS growth {growth:.1f} MB")
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert first_byte < 0.2 and growth < 30 and ingested == 5
        bodies[fmt] = body
    # Stop watching before parsing: json.loads of 50 MB holds this process's GIL.
    stop.set()
    for w in watchers:
        w.join(5)
    for s in streams:
        s.close()
    print(f"largest gap between stream blocks {max(gaps):.2f} s (heartbeat 1 s)")
    assert gaps and max(gaps) < 1 + 1
    assert len(bodies["csv"].decode().splitlines()) == n + 1
    calls = json.loads(bodies["json"], parse_constant=lambda c: pytest.fail(f"{c} in JSON export"))
    # The JSON export began after the 5 calls sent during the CSV one: every call stored then,
    # the 5 oldest read back from the history file (memory holds n).
    assert len(calls) == n + 5 and len({c["call_id"] for c in calls}) == n + 5
    assert "WORKER TIMEOUT" not in server.logs()


@pytest.mark.checklist(11)
def test_never_reading_client_costs_bounded_memory(live_server):
    # A small replay ring, so what grows is the store's own data (≈6 MB of
    # transcript) plus whatever the stuck reader costs.
    server = live_server(PATTER_DASH_SUBSCRIBER_QUEUE="500", PATTER_DASH_REPLAY_SIZE="1000")
    pid = server.worker_pid()
    import socket

    stuck = socket.create_connection(("127.0.0.1", server.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    reader = SSEClient(f"{server.url}/api/v1/events", timeout=30)
    reader.next_block()
    wait_for(lambda: server.get("/api/v1/health").json()["subscribers"]["count"] == 2)
    rss_before = status(pid, "VmRSS")
    text = "z" * 500  # 2,000 lines a call: within PATTER_DASH_MAX_CALL_TEXT
    got = []
    for start in range(0, 10_000, 100):
        server.post_events([{"type": "transcript", "data": {"call_id": f"MEM{i // 2000}", "role": "user", "text": f"{i} {text}"}} for i in range(start, start + 100)])
        got += [reader.next_event(timeout=30)["data"]["line"]["text"].split()[0] for _ in range(100)]
    assert got == [str(i) for i in range(10_000)]
    growth = (status(pid, "VmRSS") - rss_before) / 2**20
    health = wait_for(lambda: (h := server.get("/api/v1/health").json())["subscribers"]["count"] == 1 and h)
    print(f"RSS growth {growth:.1f} MB with a stuck reader; overflows {health['subscribers']['overflows']}")
    assert growth < 20 and health["subscribers"]["overflows"] >= 1
    stuck.close()


async def _sse_swarm(port: int, n: int, seconds: float, errors: list[str], received: list[int]) -> None:
    async def one(i: int) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head[:40].decode())
                return
            deadline = time.monotonic() + seconds
            count = 0
            while time.monotonic() < deadline:
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout=max(0.01, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if not data:
                    errors.append(f"stream {i} closed early")
                    return
                count += data.count(b"\nevent: ")
            received.append(count)
            writer.close()
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            errors.append(repr(exc))

    await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.checklist(15)
def test_many_sse_clients_soak(live_server):
    clients, seconds = (1000, 60.0) if FULL else (200, 8.0)
    server = live_server(PATTER_DASH_MAX_SUBSCRIBERS=str(clients + 10), PATTER_DASH_HEARTBEAT="2")
    pid = server.worker_pid()
    sockets_before = open_sockets(pid)
    rss_before = status(pid, "VmRSS")
    errors: list[str] = []
    received: list[int] = []
    swarm = threading.Thread(target=lambda: asyncio.run(_sse_swarm(server.port, clients, seconds, errors, received)))
    swarm.start()
    wait_for(lambda: server.get("/api/v1/health").json()["subscribers"]["count"] == clients, timeout=30, interval=0.2)
    latencies = []
    sent = 0
    while swarm.is_alive():
        server.post_events([{"type": "call_start", "data": {"call_id": f"SOAK{sent}"}}])
        sent += 1
        t0 = time.monotonic()
        assert server.get("/api/v1/calls?limit=50").status_code == 200
        latencies.append(time.monotonic() - t0)
        time.sleep(0.1)
    swarm.join()
    p95 = statistics.quantiles(latencies, n=20)[-1] * 1000
    print(f"{clients} clients × {seconds:.0f} s: {len(errors)} errors, REST p95 {p95:.1f} ms, "
          f"events per client min {min(received)} of {sent}, RSS +{(status(pid, 'VmRSS') - rss_before) / 2**20:.1f} MB")
    assert not errors, errors[:5]
    assert len(received) == clients and min(received) >= sent - 2
    assert p95 < 50
    wait_for(lambda: server.get("/api/v1/health").json()["subscribers"]["count"] == 0, timeout=10)
    wait_for(lambda: open_sockets(pid) <= sockets_before, timeout=10)


@pytest.mark.checklist(16)
def test_behind_nginx_with_gzip_events_arrive_promptly(live_server, tmp_path: Path):
    # A proxied request is never local: it needs the token (issue 10's proxy rule).
    server = live_server(PATTER_DASH_URL_PREFIX="/ops/voice", PATTER_DASH_TOKEN="gzip-test")
    gzip = "gzip on; gzip_min_length 1; gzip_types text/event-stream application/json;"
    with nginx(tmp_path, server.port, http=gzip, gzip=True) as port:
        sse = SSEClient(f"http://127.0.0.1:{port}/ops/voice/api/v1/events", headers={"Accept-Encoding": "gzip", **server.headers})
        sse.next_block(time.monotonic() + 2)
        t0 = time.monotonic()
        server.post_events([{"type": "call_start", "data": {"call_id": "NGX"}}])
        event = sse.next_event(timeout=2)
        delay = time.monotonic() - t0
        print(f"event through nginx (gzip on) after {delay * 1000:.0f} ms")
        assert event["data"]["call_id"] == "NGX" and delay < 1.0
        sse.close()


@pytest.mark.checklist(37)
def test_no_token_warns_and_binds_loopback_by_default(live_server):
    server = live_server()
    assert "no PATTER_DASH_TOKEN set" in server.logs()
    out = subprocess.run(
        [sys.executable, "-c", "from patter_dash.run.server import SETTINGS; print(SETTINGS['bind'])"],
        capture_output=True, text=True, cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "PATTER_DASH_BIND"},
    )
    assert out.stdout.strip() == "['127.0.0.1:8000']"
    refused = requests.get(f"{server.url}/api/v1/calls", headers={"Host": "evil.example"}, timeout=5)
    assert refused.status_code == 403
