#!/usr/bin/env python3
"""Ingest events/s with alert notifications going to a dead endpoint vs a healthy one vs no alerts (issue 18).

Each run starts a real gunicorn + gevent server (history in SQLite, as the
standalone app runs) and POSTs ``--calls`` calls (call_start, a turn, call_end:
3 events each) to ``/api/v1/ingest``, 200 events a body, from ``--conns``
connections. With alerts on, one ``turn_latency`` rule with threshold 1 ms fires
once per call (the worst case: one notification per call) to one webhook
destination, whose receiver is:

* ``none``: no PATTER_DASH_ALERTS at all;
* ``ok``: a local receiver answering 204;
* ``fail``: answering 500 at once (every notification retried with backoff);
* ``hang``: accepting and never answering (each attempt waits out the 5 s timeout);
* ``quiet``: every rule kind (8 rules, the hanging receiver as destination), none of which fires on
  these calls: what evaluating rules costs when nothing is wrong.

The figure is the median of ``--runs`` runs of events/s; a dead receiver should
cost nothing measurable (the outbox is a bounded deque the event thread appends to).

    .venv/bin/python bench/alerts.py --calls 3000 --runs 3 --out bench/results/alerts-<commit>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import LiveServer  # noqa: E402  (a real gunicorn, as the tests run it)
from tests.ops.receiver import Receiver  # noqa: E402

SECRET = "bench-secret"
#: (kind, threshold, window): rules that never fire on the bench's calls (900 ms turns, $0.05, completed)
QUIET = (("turn_latency", 5000, None), ("stuck_call", 600, None), ("p95_latency", 5000, 60), ("failure_rate", 50, 60),
         ("cost_per_call", 10, 60), ("cost_per_hour", 1_000_000, 60), ("cost_per_day", 10_000_000, 60), ("no_calls", 600, None))


def envelopes(calls: int, tag: str) -> list[dict]:
    events = []
    for i in range(calls):
        call_id = f"{tag}-{i}"
        events += [
            {"type": "call_start", "data": {"call_id": call_id, "caller": "+15550000001", "callee": "+15550000002"}},
            {"type": "turn", "data": {"call_id": call_id, "turn": {"turn_index": 0, "latency": {"agent_response_ms": 900.0}}}},
            {"type": "call_end", "data": {"call_id": call_id, "ended_at": time.time(), "status": "completed",
                                          "metrics": {"duration_seconds": 30, "cost": {"total": 0.05}}}},
        ]
    return events


def run(mode: str, calls: int, conns: int, tmp: Path) -> dict:
    receiver = None
    config: dict[str, str] = {}
    if mode != "none":
        receiver = Receiver(secret=SECRET, mode="hang" if mode == "quiet" else mode, hang=60)
        path = tmp / f"alerts-{mode}.toml"
        text = (f'[[destinations]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n'
                'timeout = 5\nqueue = 1000\n\n')
        if mode == "quiet":
            for kind, threshold, window in QUIET:
                text += f'[[rules]]\nname = "{kind}"\nkind = "{kind}"\nthreshold = {threshold}\n'
                text += f"window = {window}\n\n" if window else "\n"
        else:
            text += '[[rules]]\nname = "every-call"\nkind = "turn_latency"\nthreshold = 1\n'
        path.write_text(text)
        config["PATTER_DASH_ALERTS"] = str(path)
    server = LiveServer(Path(tempfile.mkdtemp(dir=tmp)), config)
    server.start()
    try:
        session = requests.Session()
        session.post(f"{server.url}/api/v1/ingest", json={"events": envelopes(50, "warm")}, timeout=30).raise_for_status()
        time.sleep(0.5)
        events = envelopes(calls, "run")
        bodies = [events[i : i + 200] for i in range(0, len(events), 200)]

        def post(chunk: list[list[dict]]) -> None:
            s = requests.Session()
            for body in chunk:
                s.post(f"{server.url}/api/v1/ingest", json={"events": body}, timeout=60).raise_for_status()

        began = time.perf_counter()
        with ThreadPoolExecutor(conns) as pool:
            list(pool.map(post, [bodies[i::conns] for i in range(conns)]))
        seconds = time.perf_counter() - began
        state = session.get(f"{server.url}/api/v1/alerts", timeout=10).json()["data"]
        dest = state["destinations"][0] if state["destinations"] else {}
        return {"mode": mode, "events": len(events), "seconds": round(seconds, 3), "events_per_s": round(len(events) / seconds),
                "notified": sum(r["notified"] for r in state["rules"]), "destination": dest}
    finally:
        server.kill()
        if receiver is not None:
            receiver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="none,quiet,ok,fail,hang")
    parser.add_argument("--out")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            for mode in args.modes.split(","):  # interleaved: a busy machine's drift hits every mode alike
                result = run(mode, args.calls, args.conns, Path(tmp))
                results.setdefault(mode, []).append(result)
                print(f"run {n + 1} {mode:>4}: {result['events_per_s']:>7,} events/s  notified {result['notified']:>5}  "
                      f"delivered {result['destination'].get('delivered', '-')}  failed attempts "
                      f"{result['destination'].get('failed_attempts', '-')}  dropped {result['destination'].get('dropped', '-')}",
                      flush=True)
    summary = {mode: statistics.median(r["events_per_s"] for r in runs) for mode, runs in results.items()}
    print("median events/s:", ", ".join(f"{mode} {value:,.0f}" for mode, value in summary.items()))
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        Path(args.out).write_text(json.dumps({"commit": commit, "cpus": os.cpu_count(), "args": vars(args),
                                              "median_events_per_s": summary, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
