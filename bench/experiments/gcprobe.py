#!/usr/bin/env python3
"""Experiment: in-process costs of the store at N calls (no HTTP).

    /tmp/benchvenv/bin/python bench/experiments/gcprobe.py 100000
    .venv/bin/python bench/experiments/gcprobe.py 200       # toy size (tests run this)

Prints GC-tracked objects per stored call, the time of a full ``gc.collect()``
(the pause every request sees when CPython runs a gen-2 collection), and the
per-call time of overview / costs / a page of 50 / one detail view.
"""

import gc
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer"))
sys.path.insert(0, REPO)

from harness.gen import make_call  # noqa: E402

from bench.shapes import ingest_events  # noqa: E402
from patter_dash.core.pipeline import Pipeline  # noqa: E402
from patter_dash.core.store import CallFilter  # noqa: E402
from patter_dash.model import records  # noqa: E402
from patter_dash.model.events import make_event  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
p = Pipeline(max_calls=N)
gc.collect()
n0 = len(gc.get_objects())
t = time.perf_counter()
for i in range(N):
    for etype, data in ingest_events(make_call(1, i)):
        p._apply(make_event(etype, data))  # what the event thread does per event
print(f"built {N:,} calls in {time.perf_counter() - t:.0f} s (generating the synthetic calls included)")
gc.collect()
print("gc-tracked objects per stored call:", round((len(gc.get_objects()) - n0) / N, 1))
from collections import Counter  # noqa: E402

print("most common tracked types:", Counter(type(o).__name__ for o in gc.get_objects()).most_common(6))
for _ in range(2):
    t = time.perf_counter()
    gc.collect()
    print(f"full gc.collect(): {time.perf_counter() - t:.3f} s")
gc.freeze()
t = time.perf_counter()
gc.collect()
print(f"after gc.freeze(): {time.perf_counter() - t:.3f} s")
gc.unfreeze()
st = p.store
old = st.get(make_call(1, 0).call_id)
for name, f in (("overview", lambda: st.overview(None, None)), ("costs", lambda: st.costs(None, None, None)),
                ("page of 50", lambda: st.page(CallFilter(), 50, 0)), ("detail view", lambda: records.detail(old, time.time()))):
    f()
    t = time.perf_counter()
    for _ in range(50):
        f()
    print(f"{name}: {(time.perf_counter() - t) / 50 * 1e3:.3f} ms")
print("costs series points:", len(st.costs(None, None, None)["series"]))
