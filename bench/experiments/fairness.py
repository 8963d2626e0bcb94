#!/usr/bin/env python3
"""Experiment: W3 tail latency with and without one yield per request (N=500).

    /tmp/benchvenv/bin/python bench/experiments/fairness.py

Under gunicorn's gevent worker a keep-alive connection is served by one
greenlet in a loop; when a handler never blocks and the client's next request
is already in the socket, that greenlet serves it without yielding, so a few of
wrk's 16 connections monopolise the worker and the rest wait ~1 s.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
sys.path.insert(0, PEER)
os.chdir(PEER)

from harness.adapter import load_target  # noqa: E402
from harness.workloads import wrk  # noqa: E402

target = load_target(os.path.join(os.path.dirname(HERE), "peer_target.py"))
for label, extra in (("as shipped", {}),
                     ("gevent.sleep(0) per request", {"app": "yield_app:app", "pythonpath": [HERE]})):
    os.environ["YIELD_MODE"] = "sleep0"
    h = target.start_server(max_calls=500, preload=500, seed=1, extra=extra)
    try:
        for path in ("/api/v1/analytics/overview", "/api/v1/calls?limit=50", "/api/v1/health"):
            w = wrk(h.base + path, 16, 4)
            print(json.dumps({"case": label, "path": path, "req_per_s": round(w["req_per_s"]),
                              "p50_ms": w["p50_ms"], "p90_ms": w["p90_ms"], "p99_ms": w["p99_ms"], "max_ms": w["max_ms"]}))
    finally:
        target.stop_server(h)
