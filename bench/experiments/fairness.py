#!/usr/bin/env python3
"""Experiment: W3 tail latency with and without one yield per request (N=500).

    /tmp/benchvenv/bin/python bench/experiments/fairness.py
    .venv/bin/python bench/experiments/fairness.py --n 20 --dur 1 --paths /api/v1/health   # toy size (tests run this)

Under gunicorn's gevent worker a keep-alive connection is served by one
greenlet in a loop; when a handler never blocks and the client's next request
is already in the socket, that greenlet serves it without yielding, so a few of
wrk's 16 connections monopolise the worker and the rest wait ~1 s.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
sys.path.insert(0, PEER)

from harness.adapter import load_target  # noqa: E402
from harness.workloads import wrk  # noqa: E402

PATHS = "/api/v1/analytics/overview,/api/v1/calls?limit=50,/api/v1/health"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="completed calls preloaded")
    ap.add_argument("--dur", type=int, default=4, help="seconds of wrk per path and case")
    ap.add_argument("--paths", default=PATHS, help="comma list of paths to load")
    args = ap.parse_args()
    os.chdir(PEER)
    target = load_target(os.path.join(os.path.dirname(HERE), "peer_target.py"))
    for label, extra in (("as shipped", {}),
                         ("gevent.sleep(0) per request", {"app": "yield_app:app", "pythonpath": [HERE]})):
        os.environ["YIELD_MODE"] = "sleep0"
        h = target.start_server(max_calls=args.n, preload=args.n, seed=1, extra=extra)
        try:
            for path in args.paths.split(","):
                w = wrk(h.base + path, 16, args.dur)
                print(json.dumps({"case": label, "path": path, "req_per_s": round(w["req_per_s"]),
                                  "p50_ms": w["p50_ms"], "p90_ms": w["p90_ms"], "p99_ms": w["p99_ms"],
                                  "max_ms": w["max_ms"], "errors": w["errors"]}), flush=True)
        finally:
            target.stop_server(h)


if __name__ == "__main__":
    main()
