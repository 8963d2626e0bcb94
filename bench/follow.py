#!/usr/bin/env python3
"""Following Patter's call logs (issue 14, part 2): latency from file to SSE, and idle CPU with N calls on disk.

Builds a log root of ``--calls`` finished calls spread over the last ``--days`` UTC
days (one call written by getpatter's real ``CallLogger``, copied per call with its
own ``call_id``, as a month of a busy agent looks on disk), starts one real server
(``python -m gunicorn -c gunicorn.conf.py wsgi:app`` from the repo root, the shipped
gevent worker) with ``PATTER_DASH_PATTER_LOG_DIR`` on that root and an SQLite
history, waits for it to catch up, then per mode (``notify``, ``poll``):

* **latency**: ``--latency-calls`` new calls logged one after another by the real
  ``CallLogger`` (``log_call_start``: ``metadata.json`` written atomically, as at a
  call's start); each is timed from the write returning to its ``call_start``
  frame on an open ``GET /api/v1/events`` stream. p50 / p99 / max.
* **idle CPU**: the worker's CPU time (utime + stime from /proc) over
  ``--idle-seconds`` with nothing written and no request made, as a percentage of
  one core; mode ``off`` is the same server following nothing (the baseline).

    .venv/bin/python bench/follow.py --calls 100000 --out bench/results/follow-100k.json
    .venv/bin/python bench/follow.py --calls 50 --days 2 --latency-calls 3 --idle-seconds 1   # smoke (tests run this)

Needs the repo's requirements and getpatter (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * pct // 100) - 1))]


def get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return json.loads(body)


def build_root(root: str, calls: int, days: int) -> float:
    """``calls`` finished calls over the last ``days`` days; seconds taken."""
    os.environ["PATTER_LOG_RETENTION_DAYS"] = "0"
    from getpatter.services.call_log import CallLogger

    started = time.perf_counter()
    template_root = os.path.join(root, "..", "template")
    logger = CallLogger(template_root)
    logger.log_call_start("CA-template", caller="+15550001111", callee="+15559990000", direction="inbound",
                          telephony_provider="twilio", provider_mode="pipeline")
    for index, (user, agent) in enumerate([("", "Hello, Acme support."), ("Where is my order?", "It shipped yesterday."),
                                           ("Thanks", "Goodbye!")]):
        logger.log_turn("CA-template", {"turn_index": index, "user_text": user, "agent_text": agent,
                                        "latency": {"stt_ms": 120.0, "llm_ms": 300.0, "tts_ms": 90.0, "total_ms": 1500.0,
                                                    "agent_response_ms": 510.0}, "timestamp": time.time()})
    logger.log_call_end("CA-template", duration_seconds=30.0, turns=3,
                        cost={"stt": 0.004, "tts": 0.011, "llm": 0.0021, "telephony": 0.0085, "total": 0.0256})
    template = logger.call_dir("CA-template")
    files = {name: open(os.path.join(template, name), "rb").read() for name in os.listdir(template)}
    meta = json.loads(files["metadata.json"])
    now = datetime.now(timezone.utc)
    for i in range(calls):
        day = now - timedelta(days=i * days // max(calls, 1))
        folder = os.path.join(root, "calls", f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}", f"CA-{i:07d}")
        os.makedirs(folder)
        for name, data in files.items():
            if name == "metadata.json":
                data = json.dumps({**meta, "call_id": f"CA-{i:07d}", "started_at": day.strftime("%Y-%m-%dT%H:%M:%S.000Z")}).encode()
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(data)
    shutil.rmtree(template_root)
    return time.perf_counter() - started


def start_server(port: int, env: dict[str, str], log_path: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
           "--access-logfile", "/dev/null", "wsgi:app"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}; see {log_path}")
        try:
            get_json(port, "/api/v1/health")
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server not ready; see {log_path}")


def write_result(result: dict, out: str | None) -> None:
    """Print a bench's result as JSON, and write it to ``out`` when given (``bench/results/...``)."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def caught_up(port: int, timeout: float) -> dict:
    """Wait until the follower's first pass (the catch-up) is done."""
    deadline = time.monotonic() + timeout
    logs: dict = {}
    while time.monotonic() < deadline:
        logs = get_json(port, "/api/v1/health")["patter_logs"]
        if logs["status"] == "following":
            return logs
        time.sleep(0.2)
    raise SystemExit(f"the follower did not catch up in {timeout} s: {logs}")


class Stream:
    """A ``GET /api/v1/events`` reader: the next ``call_start`` frame's call id."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", "/api/v1/events?types=call_start")
        self.response = self.conn.getresponse()

    def next_call_start(self) -> str:
        event = data = None
        while True:
            line = self.response.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif not line and event == "call_start" and data is not None:
                return data["call_id"]
            elif not line:
                event = data = None

    def close(self) -> None:
        self.conn.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mode(mode: str, root: str, work: str, args: argparse.Namespace) -> dict:
    from getpatter.services.call_log import CallLogger

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATTER_DASH_")}
    env.update({
        "PATTER_DASH_DATA_DIR": os.path.join(work, f"data-{mode}"),
        "PATTER_DASH_DB": os.path.join(work, f"history-{mode}.db"),
        "PATTER_DASH_RETENTION_DAYS": "0",
        "PATTER_DASH_PATTER_LOG_DIR": root,
        "PATTER_DASH_PATTER_LOG_POLL": "1" if mode == "poll" else "0",
        "PYTHONUNBUFFERED": "1",
    })
    if mode == "off":
        del env["PATTER_DASH_PATTER_LOG_DIR"]
    proc = start_server(port, env, os.path.join(work, f"server-{mode}.log"))
    if mode == "off":  # the baseline: the same server, idle, following nothing
        try:
            time.sleep(2.0)
            pid = get_json(port, "/api/v1/health")["pid"]
            before = cpu_seconds(pid)
            time.sleep(args.idle_seconds)
            idle = cpu_seconds(pid) - before
        finally:
            stop_server(proc)
        return {"mode": "off", "idle_cpu": {"seconds": args.idle_seconds, "cpu_seconds": round(idle, 3),
                                            "percent_of_a_core": round(100 * idle / args.idle_seconds, 2)}}
    try:
        started = time.perf_counter()
        health = caught_up(port, args.catch_up_timeout)
        catch_up = {"seconds": round(time.perf_counter() - started, 2), "folders_read": health["folders_read"],
                    "days": health["days"]}
        pid = get_json(port, "/api/v1/health")["pid"]
        stream = Stream(port)
        time.sleep(0.5)
        logger = CallLogger(root)
        latencies = []
        for i in range(args.latency_calls):
            call_id = f"BENCH-{mode}-{i}"
            logger.log_call_start(call_id, caller="+15550001111", callee="+15559990000", direction="inbound")
            written = time.perf_counter()
            while stream.next_call_start() != call_id:
                pass
            latencies.append((time.perf_counter() - written) * 1000)
            logger.log_call_end(call_id, duration_seconds=1.0, turns=0)
            time.sleep(args.gap)
        stream.close()
        time.sleep(2.0)  # the ends are read; nothing left to do
        before = cpu_seconds(pid)
        time.sleep(args.idle_seconds)
        idle = cpu_seconds(pid) - before
        logs = get_json(port, "/api/v1/health")["patter_logs"]
    finally:
        stop_server(proc)
    return {
        "mode": logs["mode"],
        "catch_up": catch_up,
        "latency_ms": {"n": len(latencies), "p50": round(percentile(latencies, 50), 1),
                       "p99": round(percentile(latencies, 99), 1), "max": round(max(latencies), 1)},
        "idle_cpu": {"seconds": args.idle_seconds, "cpu_seconds": round(idle, 3),
                     "percent_of_a_core": round(100 * idle / args.idle_seconds, 2)},
        "errors": logs["errors"], "last_error": logs["last_error"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="finished calls on disk")
    parser.add_argument("--days", type=int, default=30, help="UTC days they are spread over (today included)")
    parser.add_argument("--latency-calls", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between two timed calls")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--modes", default="notify,poll,off", help="off: the idle CPU of a server following nothing")
    parser.add_argument("--catch-up-timeout", type=float, default=900.0)
    parser.add_argument("--out", help="write the result (JSON) here")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="patter-dash-follow-")
    try:
        root = os.path.join(work, "logs")
        built = build_root(root, args.calls, args.days)
        result = {"calls_on_disk": args.calls, "days": args.days, "build_seconds": round(built, 1),
                  "modes": {mode: run_mode(mode, root, work, args) for mode in args.modes.split(",")}}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
