"""Benchmark WSGI entry: the shipped ``wsgi:app``, plus an in-process preload.

gunicorn loads ``bench.preload_app:app`` instead of ``wsgi:app``; the object
served is the very same Flask app (``from wsgi import app``). When
``BENCH_PRELOAD`` > 0, a greenlet spawned in the worker feeds the synthetic
completed calls ``make_call(BENCH_SEED, 0..N-1)`` through the public runtime
API (``app.extensions["patter_dash"].feed``), i.e. the same validation, store
and hub path as every other event, cooperatively with the worker (gunicorn's
heartbeat keeps running, so a long preload is not killed by ``timeout``).

It measures, *in the worker process*, VmRSS after warm-up + ``gc.collect()``
(before) and after the store holds every call + ``gc.collect()`` (after),
exactly as the peer harness does for Patter, and writes them to
``BENCH_STATUS_FILE``. The adapter (``bench/peer_target.py``) waits for that
file before it hands the server to a workload.

Shapes (``BENCH_SHAPE``):
* ``ingest``: per call ``call_start`` + ``call_end`` (with metrics), each a
  JSON round-tripped copy of the harness payload, i.e. what
  ``POST /api/dashboard/ingest`` hands the pipeline after parsing.
* ``sdk``: ``call_start`` + 6 ``turn`` (native ``getpatter.models.TurnMetrics``)
  + ``call_end`` with a native ``CallMetrics``: what Patter's ``serve()``
  callbacks pass in-process.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

from bench.shapes import ingest_events, sdk_events
from wsgi import app  # noqa: F401  (the object gunicorn serves)

HERE = os.path.dirname(os.path.abspath(__file__))


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _warm(make_call, seed: int) -> None:
    """Run every code path once on a throwaway pipeline (not started, not the served one)."""
    from patter_dash.core.pipeline import Pipeline
    from patter_dash.core.store import CallFilter
    from patter_dash.model import records
    from patter_dash.model.events import make_event

    tmp = Pipeline(max_calls=2, replay_size=4)
    for events in (ingest_events(make_call(seed, 10**9)), sdk_events(make_call(seed, 10**9 + 1))):
        for etype, data in events:
            tmp._apply(make_event(etype, data))
    for call in tmp.store.snapshot(CallFilter()):
        records.detail(call, time.time())
    del tmp


def _preload(n: int, seed: int, shape: str, status_file: str) -> None:
    import gevent
    from harness.gen import make_call

    dash = app.extensions["patter_dash"]
    pipeline = dash.pipeline
    events_of = sdk_events if shape == "sdk" else ingest_events
    per_call = 8 if shape == "sdk" else 2
    _warm(make_call, seed)
    gc.collect()
    rss0 = _rss_kb()
    accepted0 = pipeline.counters["accepted"]
    t0 = time.perf_counter()
    for i in range(n):
        for etype, data in events_of(make_call(seed, i)):
            while not dash.feed(etype, data):  # queue full: let the event thread drain
                gevent.sleep(0.001)
        if i % 20 == 19:
            gevent.sleep(0)  # let the event thread and gunicorn's heartbeat run
            while len(pipeline._queue) > 2000:
                gevent.sleep(0.001)
    want = accepted0 + n * per_call
    while pipeline.counters["accepted"] + pipeline.counters["rejected"] + pipeline.counters["errors"] < want:
        gevent.sleep(0.005)
    t1 = time.perf_counter()
    gc.collect()
    rss1 = _rss_kb()
    hub = pipeline.hub
    ring = [f for f in hub._ring if f is not None]
    completed = list(pipeline.store.completed.values())
    info = {
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "max_calls": pipeline.store.max_completed,
        "preload": n,
        "shape": shape,
        "stored": len(completed),
        "oldest_call_id": completed[0].call_id if completed else None,
        "newest_call_id": completed[-1].call_id if completed else None,
        "rss_before_preload_kb": rss0,
        "rss_after_preload_kb": rss1,
        "preload_s": round(t1 - t0, 3),
        "counters": dict(pipeline.counters),
        "replay_ring_frames": len(ring),
        "replay_ring_bytes": sum(len(getattr(f, "sse", None) or getattr(f, "data", "")) for f in ring),
    }
    del completed, ring
    tmp = status_file + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, status_file)


def _start() -> None:
    n = int(os.environ.get("BENCH_PRELOAD", "0"))
    status_file = os.environ.get("BENCH_STATUS_FILE")
    if not status_file:
        return
    seed = int(os.environ.get("BENCH_SEED", "1"))
    shape = os.environ.get("BENCH_SHAPE", "ingest")
    import gevent

    def job() -> None:
        try:
            _preload(n, seed, shape, status_file)
        except BaseException as exc:  # report, don't hang the adapter
            with open(status_file + ".tmp", "w") as fh:
                json.dump({"error": repr(exc)}, fh)
            os.replace(status_file + ".tmp", status_file)
            raise

    gevent.spawn(job)


_start()
