#!/usr/bin/env python3
"""Does any read stall the server while N live calls exist? (issue 10, item 5)

Starts one real patter-dash server (``python -m gunicorn -c gunicorn.conf.py
wsgi:app`` from the repo root, as the README runs it; the shipped gevent
worker), loads ``--calls`` live calls (a ``call_start`` and one transcript line
each, through ``POST /api/v1/ingest``) plus ``--completed`` finished ones, then
for ``--seconds`` runs, each in its own process on its own keep-alive
connection, back to back:

* ``active_page``: ``GET /api/v1/calls/active?limit=1000&offset=<random>``
* ``active_default``: ``GET /api/v1/calls/active`` (what the dashboard asks)
* ``history``: ``GET /api/v1/calls?limit=1000``
* ``export``: ``GET /api/v1/export/json`` (every completed call, streamed)

while this process polls ``GET /api/v1/health`` every 10 ms and records each
answer's latency. The result (JSON) gives the poller's max / p99 / p50, each
reader's request count, mean latency and body size, and how often gevent's
monitor saw the loop blocked for more than 100 ms (server log).

    .venv/bin/python bench/active_bounds.py --calls 100000 --out bench/results/active-bounds-100k.json
    .venv/bin/python bench/active_bounds.py --calls 200 --seconds 2          # smoke size (tests run this)
    .venv/bin/python bench/active_bounds.py --calls 100000 --repo /path/to/older/checkout   # before/after

Standalone: Python's standard library only (the server needs the repo's own requirements).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READERS = {
    "active_page": None,  # path chosen per request (random offset)
    "active_default": "/api/v1/calls/active",
    "history": "/api/v1/calls?limit=1000",
    "export": "/api/v1/export/json",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> tuple[int, int]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    size = 0
    while chunk := response.read(1 << 16):
        size += len(chunk)
    return response.status, size


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


# --------------------------------------------------------------- the server


def start_server(repo: str, port: int, calls: int, completed: int, log_path: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATTER_DASH_")}
    env.update({
        "PATTER_DASH_MAX_ACTIVE_CALLS": str(calls + 1000),  # room for all: this measures reads, not eviction
        "PATTER_DASH_MAX_CALLS": str(max(completed, 1)),
        "PATTER_DASH_QUEUE_SIZE": "200000",
        "PATTER_DASH_MAX_BODY": str(16 << 20),
        "PATTER_DASH_DB": ":memory:",  # measures the read model alone
        "GEVENT_MONITOR_THREAD_ENABLE": "true",
        "GEVENT_MAX_BLOCKING_TIME": "0.1",
        "PYTHONUNBUFFERED": "1",
    })
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "wsgi:app"]
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}; see {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            if request(conn, "GET", "/api/v1/health")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server not ready; see {log_path}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def load(port: int, calls: int, completed: int, batch: int = 2000) -> float:
    """Feed the live and completed calls; returns the seconds it took."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    now = time.time()
    started = time.perf_counter()

    def post(events: list[dict]) -> None:
        status, _ = request(conn, "POST", "/api/v1/ingest", json.dumps({"events": events}).encode())
        if status not in (200, 202):
            raise SystemExit(f"ingest answered {status}")

    events: list[dict] = []
    for i in range(completed):
        events.append({"type": "call_end", "data": {
            "call_id": f"done-{i:07d}", "caller": f"+1555{i % 10_000_000:07d}", "callee": "+15550001234",
            "direction": "inbound", "ended_at": now - 3600 + i * 0.01,
            "conversation_history": [{"role": "user", "text": "I'd like to book a cleaning next week."},
                                     {"role": "assistant", "text": "Of course, which day suits you?"}],
            "metrics": {"duration_seconds": 42.0, "cost": {"stt": 0.001, "tts": 0.002, "llm": 0.003, "telephony": 0.004, "total": 0.01}},
        }})
        if len(events) >= batch:
            post(events)
            events = []
    for i in range(calls):
        cid = f"live-{i:07d}"
        events.append({"type": "call_start", "data": {"call_id": cid, "caller": f"+1666{i % 10_000_000:07d}",
                                                      "callee": "+15550001234", "direction": "inbound"}})
        events.append({"type": "transcript", "data": {"call_id": cid, "role": "user",
                                                      "text": f"Hello, this is caller {i}; is anyone there?"}})
        if len(events) >= batch:
            post(events)
            events = []
    if events:
        post(events)
    return time.perf_counter() - started


# ------------------------------------------------------------------ clients


def reader(name: str, port: int, calls: int, seconds: float, out: mp.Queue) -> None:
    rng = random.Random(name)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies: list[float] = []
    sizes: list[int] = []
    errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        path = READERS[name] or f"/api/v1/calls/active?limit=1000&offset={rng.randrange(max(1, calls))}"
        t = time.perf_counter()
        try:
            status, size = request(conn, "GET", path)
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            continue
        latencies.append(time.perf_counter() - t)
        sizes.append(size)
        errors += status != 200
    out.put((name, {
        "requests": len(latencies),
        "errors": errors,
        "mean_ms": round(1e3 * sum(latencies) / len(latencies), 1) if latencies else None,
        "max_ms": round(1e3 * max(latencies), 1) if latencies else None,
        "max_body_bytes": max(sizes) if sizes else 0,
    }))


def poll_health(port: int, seconds: float, interval: float = 0.01) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            status, _ = request(conn, "GET", "/api/v1/health")
            errors += status != 200
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append(time.perf_counter() - t)
        time.sleep(interval)
    return {
        "count": len(latencies),
        "errors": errors,
        "max_ms": round(1e3 * max(latencies), 2),
        "p99_ms": round(1e3 * percentile(latencies, 99), 2),
        "p50_ms": round(1e3 * percentile(latencies, 50), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000, help="live calls to hold (default 100,000)")
    parser.add_argument("--completed", type=int, default=None, help="finished calls for /calls and export (default calls/10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the readers and the poller run")
    parser.add_argument("--repo", default=REPO, help="checkout to serve (default: this one)")
    parser.add_argument("--out", default="-", help="result file (default stdout)")
    args = parser.parse_args()
    completed = args.calls // 10 if args.completed is None else args.completed

    port = free_port()
    log_path = os.path.join(tempfile.gettempdir(), f"active-bounds-{port}.log")
    proc = start_server(args.repo, port, args.calls, completed, log_path)
    try:
        load_s = load(port, args.calls, completed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", "/api/v1/health")
        store = json.loads(conn.getresponse().read())["store"]
        conn.request("GET", "/api/v1/calls/active?limit=1")
        first = json.loads(conn.getresponse().read())
        # An older server answers every live call here, with no pagination object.
        active_total = first["pagination"]["total"] if "pagination" in first else first.get("count")
        blocked_before = open(log_path, errors="replace").read().count("appears to be blocked")

        out: mp.Queue = mp.Queue()
        procs = [mp.Process(target=reader, args=(name, port, args.calls, args.seconds, out)) for name in READERS]
        for p in procs:
            p.start()
        health = poll_health(port, args.seconds)
        readers = dict(out.get(timeout=args.seconds + 300) for _ in procs)
        for p in procs:
            p.join(30)
        blocked = open(log_path, errors="replace").read().count("appears to be blocked") - blocked_before
    finally:
        stop_server(proc)

    result = {
        "bench": "active_bounds",
        "repo": os.path.abspath(args.repo),
        "calls": args.calls,
        "completed": completed,
        "seconds": args.seconds,
        "load_seconds": round(load_s, 1),
        "store": store,
        "active_total": active_total,
        "health": health,
        "readers": readers,
        "loop_blocked_over_100ms": blocked,
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    text = json.dumps(result, indent=2)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
        print(f"health max {health['max_ms']} ms, p99 {health['p99_ms']} ms over {health['count']} polls -> {args.out}")


if __name__ == "__main__":
    main()
