#!/usr/bin/env python3
"""Durable-history figures (issue 12, "Figures"): the journal on vs off vs the peer, in one run.

Steps (``--only``, comma list; default all):

* ``ingest``: events/s with the journal on (``PATTER_DASH_DB=<tmp file>``), off
  (``:memory:``) and the peer (Patter 0.7.0's dashboard, the harness's
  ``targets/patter``): W1 in-process feed (the harness's ``w1_inproc``; ours is
  ``bench/peer_target.py``'s pipeline with or without an ``SQLiteJournal``),
  W2 single events on ``POST /api/dashboard/ingest`` at c1 and c16 (the
  harness's ``w2_ingest``), and 200-event bodies on ``POST /api/v1/ingest`` at
  c1 (``extras.batched_ingest``; the peer has no batch route). The three
  targets alternate within each repeat, so they see the same machine.
* ``restart``: a file of N stored calls (``--restart-sizes``) is built, then
  real gunicorn (``gunicorn -c gunicorn.conf.py wsgi:app``, the shipped config)
  is started on it ``--repeats`` times: process start -> first 200 from
  ``/api/v1/health`` (the first request starts the pipeline, whose restore
  reads the file, so that 200 comes after the restore).
* ``disk``: bytes per stored call: the built files (folded, WAL checkpointed)
  and the file a real server wrote from HTTP ingest in ``ingest``.
* ``reads``: ``--big`` calls on disk (default 100,000; ``--full`` 1,000,000),
  ``PATTER_DASH_MAX_CALLS=10000``: p50/p99 ms over sequential keep-alive GETs of
  the oldest page (``/api/v1/calls?offset=<total-50>``), an old call's detail
  (one of the 1,000 oldest, varying), overview and costs with ``from``/``to``
  cutting hours; each answer's status is recorded.
* ``pause``: a ``/api/v1/health`` poller (10 ms apart, own process:
  ``tests/health_poller.py``) during sustained journaled ingest (200-event bodies,
  4 connections, ``--dur`` s; also with memory only, for reference), and during
  the retention purge of ``--purge`` calls (default 100,000; all started 3 days
  ago, ``RETENTION_DAYS=1``): from ready until ``history.calls`` is 0.

How files are built (fast, without the HTTP path): 200 template calls are made
by a real in-memory ``Pipeline`` from the harness's synthetic calls (start + end
with metrics, the ingest shape W6 uses). Each stored call is a copy of a template
with its own id, start time (``--spacing`` s apart, newest ending 10 min ago) and
completion number, written through ``SQLiteJournal.commit`` in batches of 5,000
``Batch.snapshots`` with the numbers the pipeline itself stores beside a call
(``pipeline._counted``). That is the same row the server writes for a finished
call; only the transcripts and metrics repeat every 200 calls.

    .venv/bin/python bench/journal.py --out bench/results/journal-<commit>.json          # moderate sizes
    .venv/bin/python bench/journal.py --full --out bench/results/journal-full-<commit>.json  # 1M reads, 100k restart/purge
    .venv/bin/python bench/journal.py --fast --out /tmp/j.json   # smoke: tiny sizes, a few seconds per step

Run with the project's venv (it has ``getpatter`` for the peer). The peer steps
need the harness's ``targets/`` (``/work/shared/bench-peer``, or ``BENCH_PEER_DIR``);
without it they are recorded as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
for p in (REPO, BENCH, PEER):
    if p not in sys.path:
        sys.path.insert(0, p)

from harness import httpclient as hc  # noqa: E402
from harness import workloads as W  # noqa: E402
from harness.adapter import load_target  # noqa: E402
from harness.gen import make_call  # noqa: E402
from harness.workloads import log  # noqa: E402

#: Every figure key the result carries (the smoke test checks they are all there).
FIGURES = (
    "ingest.w1.on", "ingest.w1.off", "ingest.w1.peer", "ingest.w1_stream.on", "ingest.w1_stream.off",
    "ingest.w2_c1.on", "ingest.w2_c1.off", "ingest.w2_c1.peer",
    "ingest.w2_c16.on", "ingest.w2_c16.off", "ingest.w2_c16.peer",
    "ingest.batch200_c1.on", "ingest.batch200_c1.off",
    "restart", "disk.built", "disk.http",
    "reads.oldest_page", "reads.old_detail", "reads.overview", "reads.costs",
    "pause.ingest_journal", "pause.ingest_memory", "pause.purge",
)


# ------------------------------------------------------------------ helpers


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, r.read()


def get_once(port: int, path: str) -> tuple[int, bytes]:
    """One GET on its own connection, closed after (an open keep-alive would hold up a graceful stop)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        return get(conn, path)
    finally:
        conn.close()


class Server:
    """Real gunicorn with the shipped config serving ``wsgi:app`` from the repo root."""

    def __init__(self, env: dict[str, str], tag: str) -> None:
        self.port = free_port()
        self.log = os.path.join(tempfile.gettempdir(), f"bench-journal-{tag}-{self.port}.log")
        full = {k: v for k, v in os.environ.items() if not k.startswith(("PATTER_DASH_", "BENCH_"))}
        full.update({"PATTER_DASH_QUEUE_SIZE": "1000000", "PATTER_DASH_MAX_BODY": str(8 << 20),
                     "PYTHONPATH": REPO, **env})
        cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{self.port}", "wsgi:app"]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.ready_s = self._wait()
        self.health = json.loads(get_once(self.port, "/api/v1/health")[1])
        self.pids = [self.proc.pid, self.health["pid"]]
        self.host = "127.0.0.1"

    def _wait(self) -> float:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}; see {self.log}")
            try:
                if get_once(self.port, "/api/v1/health")[0] == 200:
                    return time.perf_counter() - self.t0
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"server not ready; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


# ------------------------------------------------------------ building files


def templates(count: int = 200, seed: int = 1) -> list:
    """Finished calls as a real in-memory pipeline holds them (the ingest shape: start + end with metrics)."""
    from bench.shapes import ingest_events
    from patter_dash.core.pipeline import Pipeline

    pipeline = Pipeline(max_calls=count, queue_size=100_000)
    pipeline.ensure_started()
    want = 0
    for i in range(count):
        for etype, data in ingest_events(make_call(seed, 5_000_000 + i)):
            pipeline.feed(etype, data)
            want += 1
    while sum(pipeline.counters[k] for k in ("accepted", "rejected", "errors")) < want:
        time.sleep(0.01)
    calls = list(pipeline.store.completed.values())
    pipeline.stop()
    assert len(calls) == count, (len(calls), pipeline.counters)
    return calls


def fresh_journal(path: str):
    """An empty, open SQLiteJournal at ``path`` (a file left by an earlier run is removed with its companions)."""
    from patter_dash.journal.sqlite import SQLiteJournal

    for suffix in ("", "-wal", "-shm", ".lock"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    journal = SQLiteJournal(path)
    journal.check()
    journal.open()
    return journal


def build_file(path: str, n: int, *, newest_end: float, spacing: float, tpl: list, prefix: str = "HX") -> dict:
    """``n`` stored calls through SQLiteJournal.commit; the oldest first. Returns ids and times."""
    from patter_dash.core.pipeline import _counted
    from patter_dash.journal import Batch
    from patter_dash.model.records import STATE_SLOTS, Call

    slots = STATE_SLOTS
    journal = fresh_journal(path)
    t0 = time.perf_counter()
    first_start = newest_end - 600 - (n - 1) * spacing
    batch: list = []
    for i in range(n):
        src = tpl[i % len(tpl)]
        start = first_start + i * spacing
        call = Call(f"{prefix}{i:010d}", start)
        for name in slots:
            setattr(call, name, getattr(src, name))
        shift = start - src.started_at
        call.call_id = f"{prefix}{i:010d}"
        call.started_at = start
        call.ended_at = (src.ended_at or src.started_at) + shift
        call.last_event_at = src.last_event_at + shift
        call.status_history = tuple((s, at + shift) for s, at in src.status_history)
        call.transcript = [(r, t, (ts + shift) if ts else ts, x) for r, t, ts, x in src.transcript]
        call.done = i + 1
        batch.append((call, i + 1, _counted(call)))
        if len(batch) >= 5000:
            journal.commit(Batch(snapshots=batch))
            batch = []
    if batch:
        journal.commit(Batch(snapshots=batch))
    while journal.index_pending(50_000):  # as a running server would have by now: q's index whole
        pass
    journal.close()  # checkpoints the WAL into the file
    size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    wall = time.perf_counter() - t0
    log(f"built {path}: {n:,} calls in {wall:.1f}s, {size / n:,.0f} B/call")
    return {"calls": n, "build_s": round(wall, 1), "bytes": size, "bytes_per_call": round(size / n, 1),
            "first_start": first_start, "last_start": first_start + (n - 1) * spacing, "prefix": prefix}


# ------------------------------------------------------------------ ingest


class _W1Store:
    """What the adapter's inproc_ingest/inproc_count use: a started pipeline and the events it must have applied."""

    pipeline: object
    expected: int


class JournaledW1:
    """The adapter's W1 (bench/peer_target.py) with the pipeline writing to a journal file, or not."""

    def __init__(self, base, path: str | None) -> None:
        self.base, self.path = base, path

    def __getattr__(self, name):
        return getattr(self.base, name)

    def inproc_store(self, max_calls: int):
        from patter_dash.core.pipeline import Pipeline
        from patter_dash.journal import open_journal

        store = _W1Store()
        journal = None
        if self.path:
            for suffix in ("", "-wal", "-shm", ".lock"):
                if os.path.exists(self.path + suffix):
                    os.remove(self.path + suffix)
            journal = open_journal(self.path)
            journal.check()
        store.pipeline = Pipeline(max_calls=max_calls, queue_size=1_000_000, journal=journal)
        store.pipeline.ensure_started()
        store.expected = 0
        return store

    def inproc_count(self, store: _W1Store) -> int:
        count = self.base.inproc_count(store)
        store.pipeline.stop()  # closes the file; the next run starts a fresh one
        return count


def w1_stream(target: JournaledW1, m: int, seed: int) -> float:
    """W1 as a runtime feeds: ``feed()`` never waits, so all ``m`` calls go in and we wait once for the last.

    The harness's W1 waits for each call's 8 events to be applied before feeding the next; with a
    journal an event counts as applied only once committed, so that W1 is one transaction per call.
    Here the event thread drains what queued meanwhile into one transaction.
    """
    import gc

    store = target.inproc_store(max_calls=max(m, 1000))
    prepared = [target.inproc_prepare(make_call(seed, 60_000_000 + j)) for j in range(m)]
    total = sum(len(p) for p in prepared)
    gc.collect()
    p = store.pipeline
    feed, counters = p.feed, p.counters
    t0 = time.perf_counter()
    for events in prepared:
        for etype, data in events:
            feed(etype, data)
    while counters["accepted"] + counters["rejected"] + counters["errors"] + counters["dropped"] < total:
        time.sleep(0.0005)
    dt = time.perf_counter() - t0
    if counters["rejected"] or counters["errors"] or counters.get("dropped"):
        raise RuntimeError(f"W1 stream: events not applied: {counters}")
    p.stop()
    log(f"W1 stream {'journal' if target.path else 'memory'}: {total / dt:,.0f} events/s")
    return total / dt


def step_ingest(args, res, tmp: str, peer) -> None:
    from extras import batched_ingest

    ours = load_target(os.path.join(BENCH, "peer_target.py"))
    db = os.path.join(tmp, "ingest.db")
    out = res.setdefault("ingest", {"runs": []})
    for rep in range(args.repeats):
        run: dict = {}
        for mode in ("on", "off", "peer"):
            if mode == "peer" and peer is None:
                continue
            target = peer if mode == "peer" else JournaledW1(ours, db if mode == "on" else None)
            w1 = W.w1_inproc(target, args.w1_n, 1, args.w1_m, args.seed + rep)
            run.setdefault("w1", {})[mode] = w1["runs"][0]["events_per_s"]
            if mode != "peer":
                run.setdefault("w1_stream", {})[mode] = w1_stream(target, args.w1_m, args.seed + rep)
            if mode == "peer":
                h = peer.start_server(max_calls=10_000, preload=0, seed=args.seed)
                stop = lambda h=h: peer.stop_server(h)  # noqa: E731
            else:
                dbenv = os.path.join(tmp, f"http-{rep}.db") if mode == "on" else ":memory:"
                for suffix in ("", "-wal", "-shm", ".lock"):
                    if os.path.exists(dbenv + suffix):
                        os.remove(dbenv + suffix)
                h = Server({"PATTER_DASH_MAX_CALLS": "10000", "PATTER_DASH_DB": dbenv}, f"ingest-{mode}")
                stop = h.stop
            try:
                w2 = W.w2_ingest(peer if mode == "peer" else ours, h, 1, args.dur, [1, 16], args.seed, 20 + rep)
                for conc in (1, 16):
                    r = w2[f"c{conc}"][0]
                    # A call is 2 requests of one event each: events/s = req/s.
                    run.setdefault(f"w2_c{conc}", {})[mode] = r["req_per_s"] if not (r["non2xx"] or r["exc"]) else None
                    run.setdefault(f"w2_c{conc}_errors", {})[mode] = r["non2xx"] + r["exc"]
                if mode != "peer":
                    b = batched_ingest(h, args.seed + rep, 1, args.dur, [200], [1])["events200_c1"][0]
                    run.setdefault("batch200_c1", {})[mode] = b["events_per_s"] if not (b["non2xx"] or b["exc"]) else None
                    run.setdefault("batch200_c1_errors", {})[mode] = b["non2xx"] + b["exc"]
                    if mode == "on":
                        health = json.loads(get_once(h.port, "/api/v1/health")[1])
                        run["http_file"] = health["history"]
                        # After ~3 × dur s of sustained ingest: stays near the journal's WAL_LIMIT (32 MB).
                        run["wal_bytes_after_ingest"] = os.path.getsize(dbenv + "-wal")
            finally:
                stop()
        out["runs"].append(run)
        log(f"ingest repeat {rep}: {json.dumps({k: v for k, v in run.items() if k != 'http_file'})}")
        save(args, res)
    med: dict = {}
    for fig in ("w1", "w1_stream", "w2_c1", "w2_c16", "batch200_c1"):
        med[fig] = {m: median([r[fig].get(m) for r in out["runs"] if fig in r])
                    for m in ("on", "off", "peer") if any(m in r.get(fig, {}) for r in out["runs"])}
        if med[fig].get("on") and med[fig].get("off"):
            med[fig]["on_over_off"] = round(med[fig]["on"] / med[fig]["off"], 3)
            # Ratios within each repeat (same machine minute), then their median.
            med[fig]["on_over_off_paired"] = round(median(
                [r[fig]["on"] / r[fig]["off"] for r in out["runs"] if r[fig].get("on") and r[fig].get("off")]), 3)
        if fig in ("batch200_c1", "w1_stream"):
            med[fig]["peer"] = None  # no batch route on the peer; its store has no queue to stream into
    out["median"] = med
    http_files = [r["http_file"] for r in out["runs"] if r.get("http_file", {}).get("calls")]
    res.setdefault("disk", {})["http"] = [
        {"calls": f["calls"], "bytes": f["bytes"], "bytes_per_call": round(f["bytes"] / f["calls"], 1)} for f in http_files
    ]


# ----------------------------------------------------------------- restart


def step_restart(args, res, tmp: str, tpl: list) -> None:
    out = res.setdefault("restart", {})
    for n in args.restart_sizes:
        path = os.path.join(tmp, f"restart-{n}.db")
        built = build_file(path, n, newest_end=time.time(), spacing=args.spacing, tpl=tpl)
        res.setdefault("disk", {}).setdefault("built", []).append({k: built[k] for k in ("calls", "bytes", "bytes_per_call")})
        runs = []
        for _ in range(args.repeats):
            s = Server({"PATTER_DASH_DB": path, "PATTER_DASH_MAX_CALLS": "10000", "PATTER_DASH_RETENTION_DAYS": "0"},
                       f"restart-{n}")
            try:
                hist = s.health["history"]
                runs.append({"ready_s": round(s.ready_s, 3), "restore_s": hist.get("restore_seconds"),
                             "calls": hist.get("calls"), "in_memory": s.health["store"].get("completed")})
            finally:
                s.stop()
        out[str(n)] = {"runs": runs, "ready_s_median": median([r["ready_s"] for r in runs]),
                       "restore_s_median": median([r["restore_s"] for r in runs]), "build": built}
        log(f"restart {n:,}: ready {out[str(n)]['ready_s_median']:.2f}s (restore {out[str(n)]['restore_s_median']}s) "
            f"runs {[r['ready_s'] for r in runs]} calls {[r['calls'] for r in runs]}")
        os.remove(path)
        save(args, res)


# ------------------------------------------------------------------- reads


def step_reads(args, res, tmp: str, tpl: list) -> None:
    path = args.reads_db or os.path.join(tmp, "reads.db")
    n = args.big
    spacing = args.big_spacing
    built_info = path + ".json"
    if args.reads_db and os.path.exists(path) and os.path.exists(built_info):
        with open(built_info) as fh:
            built = json.load(fh)  # kept from an earlier run (--reads-db): same calls, same times
        assert built["calls"] == n, f"{path} holds {built['calls']} calls, not {n}"
    else:
        built = build_file(path, n, newest_end=time.time(), spacing=spacing, tpl=tpl)
        with open(built_info, "w") as fh:
            json.dump(built, fh)
    res.setdefault("disk", {}).setdefault("built", []).append({k: built[k] for k in ("calls", "bytes", "bytes_per_call")})
    s = Server({"PATTER_DASH_DB": path, "PATTER_DASH_MAX_CALLS": str(args.memory), "PATTER_DASH_RETENTION_DAYS": "0"},
               "reads")
    out: dict = {"calls_on_disk": n, "in_memory": s.health["store"].get("completed"), "ready_s": round(s.ready_s, 2),
                 "history_calls": s.health["history"].get("calls"), "build": built}
    try:
        conn = http.client.HTTPConnection(s.host, s.port, timeout=300)
        status, body = get(conn, "/api/v1/calls?limit=1")
        total = json.loads(body).get("pagination", {}).get("total")
        out["list_total"] = total
        span = built["last_start"] - built["first_start"]
        # Cut hours at both ends: start 1/3 into the span at :17:31, end 1/6 before its end at :43:07.
        lo = int((built["first_start"] + span / 3) // 3600) * 3600 + 17 * 60 + 31
        hi = int((built["last_start"] - span / 6) // 3600) * 3600 + 43 * 60 + 7
        rng = random.Random(1)
        paths = {
            "oldest_page": lambda: f"/api/v1/calls?limit=50&offset={max(0, (total or 50) - 50)}",
            "old_detail": lambda: f"/api/v1/calls/{built['prefix']}{rng.randrange(min(1000, n)):010d}",
            "overview": lambda: f"/api/v1/analytics/overview?from={lo}&to={hi}",
            "costs": lambda: f"/api/v1/analytics/costs?from={lo}&to={hi}",
        }
        out["range"] = {"from": lo, "to": hi}
        for name, make in paths.items():
            lat, statuses, sizes = [], {}, []
            for _ in range(args.reads):
                p = make()
                t0 = time.perf_counter()
                st, body = get(conn, p)
                lat.append((time.perf_counter() - t0) * 1e3)
                statuses[st] = statuses.get(st, 0) + 1
                sizes.append(len(body))
            out[name] = {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2), "max_ms": round(max(lat), 2),
                         "requests": len(lat), "statuses": {str(k): v for k, v in statuses.items()},
                         "body_bytes": int(median(sizes)), "example": make()}
            if name == "oldest_page":
                data = json.loads(body).get("data") or []
                out[name]["rows"] = len(data)
                out[name]["oldest_id"] = data[-1].get("call_id") if data else None
            log(f"reads {name}: p50 {out[name]['p50_ms']} ms p99 {out[name]['p99_ms']} ms statuses {statuses}")
        conn.close()
    finally:
        s.stop()
        if not args.reads_db:
            os.remove(path)
    res["reads"] = out
    save(args, res)


# ------------------------------------------------------------------- pause


def poller(port: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c",
                             "import json,sys; sys.path.insert(0, sys.argv[1]); from health_poller import poll; "
                             "print(json.dumps(poll(sys.argv[2], float(sys.argv[3]), 0.01)))",
                             os.path.join(REPO, "tests"), f"http://127.0.0.1:{port}/api/v1/health", str(seconds)],
                            stdout=subprocess.PIPE, text=True)


def summarize_poll(raw: dict) -> dict:
    ms = raw["ms"]
    return {"count": raw["count"], "errors": raw["errors"], "max_ms": max(ms) if ms else None,
            "p99_ms": pct(ms, 99) if ms else None, "p50_ms": pct(ms, 50) if ms else None}


def step_pause(args, res, tmp: str, tpl: list) -> None:
    from extras import BatchFeeder

    out = res.setdefault("pause", {})
    for mode in ("journal", "memory"):
        runs = []
        for rep in range(args.repeats):
            db = os.path.join(tmp, f"pause-{rep}.db") if mode == "journal" else ":memory:"
            s = Server({"PATTER_DASH_DB": db, "PATTER_DASH_MAX_CALLS": "10000"}, f"pause-{mode}")
            try:
                probe = poller(s.port, args.dur + 1.0)
                time.sleep(0.5)  # the poller's interpreter is up and polling before the load starts
                feeder = BatchFeeder(s.host, args.seed, 95_000_000 + rep * 1_000_000 + (mode == "memory") * 500_000, 200)
                r = asyncio.run(hc.closed_loop(s.host, s.port, 4, args.dur, feeder.next))
                poll = summarize_poll(json.loads(probe.communicate(timeout=args.dur + 120)[0]))
                hist = json.loads(get_once(s.port, "/api/v1/health")[1])["history"]
                runs.append({**poll, "events_per_s": round(r["requests"] * 200 / r["wall_s"]),
                             "ingest_errors": r["non2xx"] + r["exc"], "calls_after": hist.get("calls")})
            finally:
                s.stop()
                for suffix in ("", "-wal", "-shm", ".lock"):
                    if db != ":memory:" and os.path.exists(db + suffix):
                        os.remove(db + suffix)
            log(f"pause ingest {mode} rep{rep}: health max {runs[-1]['max_ms']} ms p99 {runs[-1]['p99_ms']} ms "
                f"({runs[-1]['events_per_s']:,} events/s, {runs[-1]['count']} polls)")
        out[f"ingest_{mode}"] = {"runs": runs, "max_ms_median": median([r["max_ms"] for r in runs]),
                                 "max_ms_worst": max(r["max_ms"] for r in runs)}
        save(args, res)
    # The purge: every stored call started 3 days ago, RETENTION_DAYS=1.
    runs = []
    for rep in range(args.repeats):
        path = os.path.join(tmp, "purge.db")
        build_file(path, args.purge, newest_end=time.time() - 3 * 86_400, spacing=0.5, tpl=tpl, prefix="PX")
        s = Server({"PATTER_DASH_DB": path, "PATTER_DASH_MAX_CALLS": "10000", "PATTER_DASH_RETENTION_DAYS": "1"}, "purge")
        try:
            conn = http.client.HTTPConnection(s.host, s.port, timeout=60)
            lat: list[float] = []
            first_calls = s.health["history"].get("calls")
            t0 = time.perf_counter()
            calls = first_calls
            errors = 0
            while time.perf_counter() - t0 < args.purge_timeout:
                t = time.perf_counter()
                st, body = get(conn, "/api/v1/health")
                lat.append((time.perf_counter() - t) * 1e3)
                errors += st != 200
                calls = json.loads(body)["history"].get("calls")
                if calls == 0:
                    break
                time.sleep(0.01)
            wall = time.perf_counter() - t0
            conn.close()
        finally:
            s.stop()
            for suffix in ("", "-wal", "-shm", ".lock"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        runs.append({"calls_before": first_calls, "calls_after": calls, "seconds_to_empty": round(wall, 2),
                     "count": len(lat), "errors": errors, "max_ms": round(max(lat), 2), "p99_ms": round(pct(lat, 99), 2),
                     "p50_ms": round(pct(lat, 50), 2)})
        log(f"pause purge rep{rep}: {first_calls} -> {calls} calls in {wall:.1f}s; health max {runs[-1]['max_ms']} ms "
            f"p99 {runs[-1]['p99_ms']} ms over {len(lat)} polls")
    out["purge"] = {"runs": runs, "calls": args.purge, "max_ms_median": median([r["max_ms"] for r in runs]),
                    "max_ms_worst": max(r["max_ms"] for r in runs)}
    save(args, res)


# -------------------------------------------------------------------- main


def figures(res: dict) -> dict:
    """The flat table of every figure (null where a step did not run or the peer is absent)."""
    ing = (res.get("ingest") or {}).get("median") or {}
    out: dict = {}
    for fig in ("w1", "w1_stream", "w2_c1", "w2_c16", "batch200_c1"):
        for mode in ("on", "off", "peer"):
            key = f"ingest.{fig}.{mode}"
            if key in FIGURES:
                out[key] = (ing.get(fig) or {}).get(mode)
    out["restart"] = {n: r["ready_s_median"] for n, r in (res.get("restart") or {}).items()}
    disk = res.get("disk") or {}
    out["disk.built"] = {str(b["calls"]): b["bytes_per_call"] for b in disk.get("built", [])}
    out["disk.http"] = median([f["bytes_per_call"] for f in disk.get("http", [])])
    reads = res.get("reads") or {}
    for name in ("oldest_page", "old_detail", "overview", "costs"):
        r = reads.get(name)
        out[f"reads.{name}"] = {k: r[k] for k in ("p50_ms", "p99_ms", "statuses")} if r else None
    pause = res.get("pause") or {}
    for name in ("ingest_journal", "ingest_memory", "purge"):
        out[f"pause.{name}"] = (pause.get(name) or {}).get("max_ms_median")
    return out


def save(args, res: dict) -> None:
    res["figures"] = figures(res)
    if args.out == "-":
        return
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="ingest,restart,reads,pause")
    ap.add_argument("--full", action="store_true", help="the issue's sizes: 1,000,000 on disk, restart at 10k and 100k")
    ap.add_argument("--fast", action="store_true", help="smoke: tiny sizes, ~1 s runs (tests/test_bench_smoke.py)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--dur", type=float, default=None, help="seconds per HTTP ingest run and per ingest pause run")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--reads-db", help="keep the reads step's file here and reuse it in later runs (it is not deleted)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="-")
    args = ap.parse_args()
    if args.fast:
        sizes = dict(repeats=1, dur=0.5, w1_n=20, w1_m=50, restart_sizes=[200], big=2000, memory=500, reads=20,
                     purge=500, spacing=37.0, big_spacing=37.0)
    elif args.full:
        sizes = dict(repeats=3, dur=5.0, w1_n=10_000, w1_m=5000, restart_sizes=[10_000, 100_000], big=1_000_000,
                     memory=10_000, reads=300, purge=100_000, spacing=37.0, big_spacing=3.0)
    else:
        sizes = dict(repeats=3, dur=5.0, w1_n=10_000, w1_m=3000, restart_sizes=[10_000, 100_000], big=100_000,
                     memory=10_000, reads=200, purge=100_000, spacing=37.0, big_spacing=30.0)
    for k, v in sizes.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.purge_timeout = 600.0
    if args.out != "-":
        args.out = os.path.abspath(args.out)
    steps = set(args.only.split(","))
    peer = None
    if not args.no_peer and os.path.exists(os.path.join(PEER, "targets", "patter.py")):
        os.chdir(PEER)  # the harness's targets/ import from its own folder
        peer = load_target("patter")
    res: dict = {"bench": "journal", "commit": _commit(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "cpus": os.cpu_count(), "load_before": os.getloadavg(), "peer": bool(peer),
                 "sizes": {k: getattr(args, k) for k in sizes}, "mode": "fast" if args.fast else "full" if args.full else "default"}
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        tpl = templates(50 if args.fast else 200, args.seed) if steps & {"restart", "reads", "pause"} else []
        if "ingest" in steps:
            step_ingest(args, res, tmp, peer)
        if "restart" in steps:
            step_restart(args, res, tmp, tpl)
        if "reads" in steps:
            step_reads(args, res, tmp, tpl)
        if "pause" in steps:
            step_pause(args, res, tmp, tpl)
    res["load_after"] = os.getloadavg()
    save(args, res)
    text = json.dumps(res["figures"], indent=1)
    print(text)


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
