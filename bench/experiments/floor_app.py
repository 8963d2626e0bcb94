"""Benchmark only: the benchmark app plus two routes ``bench/ingest.py`` needs.

* ``POST /bench/floor`` reads the body and answers ``{"ok": true}``: the
  gunicorn + gevent + Flask cost of one request, the floor single-event ingest
  is compared with (served by the same worker, in the same run).
* ``POST /bench/gc`` runs a full ``gc.collect()`` in the worker and says how
  long it took, so a wrk run can be timed across a full collection.
"""

import gc
import time

from flask import request

from bench.preload_app import app


@app.post("/bench/floor")
def floor():
    request.get_data()
    return {"ok": True}


@app.post("/bench/gc")
def collect():
    t0 = time.perf_counter()
    found = gc.collect()
    return {"seconds": time.perf_counter() - t0, "found": found, "tracked": len(gc.get_objects()),
            "frozen": gc.get_freeze_count()}
