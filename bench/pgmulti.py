#!/usr/bin/env python3
"""Several dashboard processes on one PostgreSQL (issue 17): ingest, reads, a late start, live latency.

Owns the figures of ``PATTER_DASH_DB=postgresql://...`` shared by several real
gunicorn + gevent servers (``gunicorn -c gunicorn.conf.py wsgi:app``, the shipped
config, on free loopback ports: no token needed). Steps (``--only``, comma list):

* ``pgwrite``: no dashboard, the journal's commit alone (200 events a
  transaction) from 1, 2 and 4 writers at once: what PostgreSQL itself takes.

* ``ingest``: events/s acknowledged (2xx) / wall time with 1, 2 and 4 processes
  (separate servers, ``-w 1`` each) on one fresh database, the client's
  connections dealt round-robin over them: ``batched`` (``POST /api/v1/ingest``,
  200 events a body, c4) and ``single`` (one event a body: a call's start, then
  its end on the same connection, c16); the same on one process with an SQLite
  history. After each run every process's ``/api/v1/analytics/overview``
  ``total_calls`` must reach the calls sent (``agree``, and how long it took).
* ``reads``: ``wrk -t1 -c16`` for ``--wrk-dur`` s on ``/api/v1/calls?limit=50``
  and ``/api/v1/analytics/overview`` against one server ``-w 1``, then one
  ``-w 2``, both on a database holding ``--n`` calls (loaded by batched ingest);
  req/s and the ratio -w 2 / -w 1 (goal >= 1.6 on 2 cores).
* ``ready``: with N calls stored (``--sizes``), a new server on that database:
  seconds from process start to the first ``/api/v1/health`` 200 whose
  ``history.log.behind`` is 0 while its overview says ``total_calls == N``
  (goal <= 5 s at 100,000).
* ``e2e``: servers A and B, ``--S`` SSE subscribers on ``/api/v1/events`` (half
  on each; ``bench/sse_sub.py``, one process per server); a publisher posts
  single events to A only, ``--rate`` events/s for ``--e2e-dur`` s (calls take
  turns on 8 keep-alive connections), each send time kept by (event type, call
  id); latency = the frame's receive time - that send time (CLOCK_MONOTONIC in
  both processes), p50/p99/max on B's subscribers (goal p99 <= 50 ms) and on
  A's. The subscribers' own process shares the cores: at 1,000 readers x 200
  events/s it reads 200,000 frames/s, so its lag is in the figure too
  (``client_cpu_s`` says how busy it was).

PostgreSQL: ``--db-url`` names a server the script may create databases on (one
fresh database a measurement, dropped at the end); without it one is started
here as the tests start theirs (``tests/pg.py``: initdb + pg_ctl on a free
loopback port, thrown away after). The peer's single-event W2 c16, for
reference, is ``bench/ingest.py --target patter --only w2``.

    .venv/bin/python bench/pgmulti.py --out bench/results/pgmulti-<commit>.json
    .venv/bin/python bench/pgmulti.py --only reads --n 10000
    .venv/bin/python bench/pgmulti.py --fast --out /tmp/pgmulti.json    # smoke: N=200, 2 s runs, 20 subscribers
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
for _path in (PEER, BENCH, REPO):  # the harness, bench's own helpers, tests.pg
    if _path not in sys.path:
        sys.path.insert(0, _path)

from extras import BatchFeeder  # noqa: E402
from follow import free_port, get_json, start_server, write_result  # noqa: E402
from harness import httpclient as hc  # noqa: E402
from harness.gen import make_call  # noqa: E402
from harness.proc import cpu_seconds, raise_nofile  # noqa: E402
from harness.workloads import log, wrk  # noqa: E402

HOST = "127.0.0.1"
INGEST = "/api/v1/ingest"
READ_PATHS = {"list": "/api/v1/calls?limit=50", "overview": "/api/v1/analytics/overview"}
STEPS = ("pgwrite", "ingest", "reads", "ready", "e2e")
# Call ids per use (BatchFeeder stamps its base into every id): no two runs of one database share one.
INGEST_BASE, PRELOAD_BASE, E2E_BASE = 60_000_000, 61_000_000, 62_000_000
#: Seconds a stopping server gets before SIGKILL (``--stop-grace``), and how many servers needed it.
STOPS = {"grace": 20.0, "forced": 0}


# ----------------------------------------------------------------- PostgreSQL


class Databases:
    """Fresh databases on one PostgreSQL: the one ``--db-url`` names, or a throwaway cluster started here."""

    def __init__(self, url: str | None) -> None:
        self.server = None
        if url is None:
            from tests.pg import PostgresServer

            self.server = PostgresServer().init().start()
            url = self.server.url()
        self.url = url
        self.made: list[str] = []

    def _admin(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def new(self, tag: str) -> str:
        """A new, empty database's URL (the same server, role and options as ``--db-url``)."""
        name = f"pgmulti_{os.getpid()}_{tag}"
        with self._admin() as db:
            db.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        self.made.append(name)
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + name))

    def close(self) -> None:
        try:
            with self._admin() as db:
                for name in self.made:
                    db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            if self.server is not None:
                self.server.destroy()


# -------------------------------------------------------------------- servers


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    started: float  # perf_counter just before the process was started
    up_s: float  # until its first health answer (follow.start_server's wait)


def server_env(db: str, data_dir: str, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATTER_DASH_", "BENCH_", "GUNICORN_"))}
    env.update({
        "PATTER_DASH_DB": db,
        "PATTER_DASH_DATA_DIR": data_dir,
        # The synthetic calls start at fixed past dates: the retention purge would delete them under the count.
        "PATTER_DASH_RETENTION_DAYS": "0",
        "PATTER_DASH_QUEUE_SIZE": "1000000",
        "PATTER_DASH_MAX_BODY": str(8 << 20),
        "PATTER_DASH_MAX_SUBSCRIBERS": "1100",
        "PATTER_DASH_WORKER_CONNECTIONS": "2500",
        "PYTHONUNBUFFERED": "1",
    })
    if workers > 1:  # gunicorn reads extra arguments here, over the config file: follow.start_server's command stays
        env["GUNICORN_CMD_ARGS"] = f"-w {workers}"
    return env


def start(db: str, work: str, name: str, workers: int = 1) -> Server:
    port = free_port()
    env = server_env(db, os.path.join(work, f"data-{name}"), workers)
    started = time.perf_counter()
    proc = start_server(port, env, os.path.join(work, f"server-{name}.log"))
    return Server(port, proc, started, time.perf_counter() - started)


@contextmanager
def fleet(db: str, work: str, name: str, count: int = 1, workers: int = 1) -> Iterator[list[Server]]:
    """``count`` servers on ``db``: the first alone (it creates the schema), the rest at once; all stopped after."""
    servers = [start(db, work, f"{name}-0", workers)]
    try:
        failed: BaseException | None = None
        with ThreadPoolExecutor(max(1, count - 1)) as pool:
            for future in [pool.submit(start, db, work, f"{name}-{i}", workers) for i in range(1, count)]:
                try:
                    servers.append(future.result())
                except BaseException as exc:  # start_server raises SystemExit; the others still need stopping
                    failed = exc
        if failed:
            raise failed
        yield servers
    finally:
        stop_all(servers, STOPS["grace"])


def stop_all(servers: list[Server], grace: float) -> None:
    """SIGTERM every server at once, SIGKILL what is still up after ``grace`` s.

    Not follow.stop_server one by one: that waits 20 s each, and a worker that read from PostgreSQL
    can take 10 s to leave (psycopg_pool's reader threads each get 5 s to stop). Everything ingest
    acknowledged is committed by then, so a kill loses nothing a later step reads.
    """
    for server in servers:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for server in servers:
        try:
            server.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            STOPS["forced"] += 1
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(5)


def total_calls(port: int) -> int:
    return get_json(port, READ_PATHS["overview"])["data"]["total_calls"]


def settle(servers: list[Server], expected: int, timeout: float) -> dict:
    """Wait until every process serves ``expected`` finished calls: whether they did, how long it took."""
    started = time.perf_counter()
    while True:
        totals = [total_calls(s.port) for s in servers]
        agree = all(t == expected for t in totals)
        if agree or time.perf_counter() - started > timeout:
            return {"agree": agree, "expected": expected, "totals": totals,
                    "settle_s": round(time.perf_counter() - started, 3)}
        time.sleep(0.05)


def wait_workers(port: int, workers: int, calls: int, timeout: float) -> list[int]:
    """Until ``workers`` distinct worker pids have answered health holding ``calls`` calls, caught up with the log."""
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    while len(ready) < workers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ready)} of {workers} workers on :{port} reached {calls} calls")
        health = get_json(port, "/api/v1/health")
        history = health.get("history") or {}
        if history.get("calls") == calls and (history.get("log") or {}).get("behind") == 0:
            ready.add(health["pid"])
        time.sleep(0.02)
    return sorted(ready)


# --------------------------------------------------------------------- ingest


def ingest_requests(feeder: BatchFeeder, per_body: int, calls: int | None = None) -> Callable:
    """``next_batch`` for ``hc.closed_loop``: bodies of ``per_body`` events (start + end of distinct calls);
    for 1, a call's start then its end as two requests on one connection (so the end never overtakes its
    start on another connection). None once ``calls`` calls have been sent, when given."""

    def one(body: bytes) -> bytes:
        return hc.build_request("POST", INGEST, HOST, body)

    def next_batch(_worker: int) -> list[bytes] | None:
        if calls is not None and feeder.k >= calls:
            return None
        if per_body == 1:
            return [one(envelope) for envelope in feeder._fresh()]
        envelopes: list[bytes] = []
        while len(envelopes) < per_body and (calls is None or feeder.k < calls):
            envelopes += feeder._fresh()
        return [one(b'{"events":[' + b",".join(envelopes) + b"]}")]

    return next_batch


def deal(ports: list[int], conc: int) -> list[tuple[int, int]]:
    """Connections dealt round-robin over the servers: (port, connections) for each that gets any."""
    return [(port, len(range(i, conc, len(ports)))) for i, port in enumerate(ports) if i < conc]


def spread_ingest(ports: list[int], per_body: int, conc: int, dur: float, base: int, seed: int,
                  calls: int | None = None) -> dict:
    """Closed-loop ingest over every server at once; events acknowledged per second and the calls sent."""
    feeder = BatchFeeder(HOST, seed, base, 2)
    next_batch = ingest_requests(feeder, per_body, calls)

    async def go() -> list[dict]:
        return await asyncio.gather(*(hc.closed_loop(HOST, port, n, dur, next_batch) for port, n in deal(ports, conc)))

    parts = asyncio.run(go())
    wall = max(p["wall_s"] for p in parts)
    lat = [x for p in parts for x in p["latencies"]]
    acked = sum(p["requests"] - p["non2xx"] for p in parts) * per_body
    return {"events_per_body": per_body, "conc": conc, "processes": len(ports), "wall_s": round(wall, 3),
            "events_acked": acked, "events_per_s": round(acked / wall, 1), "calls_sent": feeder.k,
            "p50_ms": round(hc.percentile(lat, 50) * 1e3, 2), "p99_ms": round(hc.percentile(lat, 99) * 1e3, 2),
            "non2xx": sum(p["non2xx"] for p in parts), "exc": sum(p["exc"] for p in parts)}


def ingest_config(db: str, work: str, name: str, processes: int, args: argparse.Namespace, base: int) -> dict:
    """Batched then single ingest on ``processes`` servers of one history; after each, do they all agree?"""
    out: dict[str, Any] = {"processes": processes, "journal": "postgres" if db.startswith("postgres") else "sqlite"}
    sent = 0
    with fleet(db, work, name, processes) as servers:
        ports = [s.port for s in servers]
        for i, (mode, per_body, conc) in enumerate((("batched", 200, 4), ("single", 1, 16))):
            row = spread_ingest(ports, per_body, conc, args.dur, base + i * 100_000, args.seed)
            sent += row["calls_sent"]
            row.update(settle(servers, sent, args.settle_timeout))  # cumulative: the modes share the database
            out[mode] = row
            log(f"ingest {name} {mode}: {row['events_per_s']:,.0f} events/s, agree={row['agree']} "
                f"(totals {row['totals']} of {sent}, {row['settle_s']} s) errs={row['non2xx']}+{row['exc']}")
    return out


def step_pgwrite(args: argparse.Namespace, dbs: Databases) -> dict:
    """What PostgreSQL itself takes, no dashboard: the journal's commit alone, 200 events a transaction,
    from 1, 2 and 4 writers at once (a connection each, as each process has one), for ``--dur`` s.

    Each commit takes the log's lock and first reads what the others wrote since its position, as a
    process's commit does: the figure is the ceiling of the shared log on this server, whatever the
    number of dashboard processes feeding it.
    """
    from patter_dash.journal import Batch, open_journal
    from patter_dash.model.events import make_event

    out: dict[str, Any] = {}
    for writers in (1, 2, 4):
        db = dbs.new(f"write{writers}")
        journals = [open_journal(db) for _ in range(writers)]
        journals[0].check()
        for journal in journals:
            journal.open()
        deadline = time.monotonic() + args.dur

        def write(w: int) -> int:
            written, position = 0, 0
            while time.monotonic() < deadline:
                events = [make_event("transcript", {"call_id": f"W{w}-{written // 2000}", "role": "user",
                                                    "text": f"line {written + k} of a caller"}, None) for k in range(200)]
                batch = Batch(events=events, after=position)
                journals[w].commit(batch)
                position = events[-1].seq
                written += len(events)
            return written

        t0 = time.perf_counter()
        with ThreadPoolExecutor(writers) as pool:
            total = sum(pool.map(write, range(writers)))
        wall = time.perf_counter() - t0
        for journal in journals:
            journal.close()
        out[str(writers)] = {"events": total, "events_per_s": round(total / wall)}
        log(f"pgwrite {writers} writer(s): {total / wall:,.0f} events/s")
    return {"writers": out, "agree": True}


def step_ingest(args: argparse.Namespace, dbs: Databases, work: str) -> dict:
    configs = [(f"pg{k}", dbs.new(f"ingest{k}"), k) for k in args.processes]
    configs.append(("sqlite1", os.path.join(work, "ingest-sqlite.db"), 1))
    out = {name: ingest_config(db, work, name, k, args, INGEST_BASE + i * 1_000_000)
           for i, (name, db, k) in enumerate(configs)}
    return {"configs": out, "agree": all(c[m]["agree"] for c in out.values() for m in ("batched", "single"))}


# --------------------------------------------------------------- stored calls


def preloaded(cache: dict[int, str], dbs: Databases, work: str, n: int, args: argparse.Namespace) -> str:
    """A database holding ``n`` finished calls (batched ingest through one server), made once per size."""
    if n not in cache:
        db = dbs.new(f"n{n}")
        with fleet(db, work, f"preload{n}") as (server,):
            t0 = time.perf_counter()
            row = spread_ingest([server.port], 200, 4, 24 * 3600, PRELOAD_BASE + n, args.seed, calls=n)
            done = settle([server], n, args.settle_timeout)
        if not done["agree"] or row["non2xx"] or row["exc"]:
            raise SystemExit(f"preloading {n} calls failed: {row} {done}")
        log(f"preloaded {n:,} calls in {time.perf_counter() - t0:.1f} s")
        cache[n] = db
    return cache[n]


# ---------------------------------------------------------------------- reads


def wrk_paths(port: int, dur: float, pids: list[int]) -> dict:
    """wrk -c16 on each read path; with each worker's CPU seconds meanwhile (did both workers serve?)."""
    out = {}
    for key, path in READ_PATHS.items():
        before = [cpu_seconds([pid]) for pid in pids]
        res = wrk(f"http://{HOST}:{port}{path}", 16, dur)
        res.pop("raw", None)
        out[key] = {k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}
        out[key]["worker_cpu_s"] = [round(cpu_seconds([pid]) - b, 2) for pid, b in zip(pids, before)]
    return out


def step_reads(args: argparse.Namespace, dbs: Databases, work: str, cache: dict[int, str]) -> dict:
    db = preloaded(cache, dbs, work, args.n, args)
    out: dict[str, Any] = {"calls": args.n, "conc": 16, "dur": args.wrk_dur}
    for workers in (1, 2):
        with fleet(db, work, f"reads-w{workers}", workers=workers) as (server,):
            pids = wait_workers(server.port, workers, args.n, args.settle_timeout)
            out[f"w{workers}"] = {"worker_pids": pids, **wrk_paths(server.port, args.wrk_dur, pids)}
            out[f"w{workers}"]["totals"] = [total_calls(server.port) for _ in range(2 * workers)]
        log(f"reads -w {workers}: " + ", ".join(f"{k} {out[f'w{workers}'][k]['req_per_s']:,.0f} req/s" for k in READ_PATHS))
    out["ratio_w2_w1"] = {k: round(out["w2"][k]["req_per_s"] / out["w1"][k]["req_per_s"], 2) for k in READ_PATHS}
    errors = sum(out[w][k]["errors"] for w in ("w1", "w2") for k in READ_PATHS)
    out["agree"] = errors == 0 and all(t == args.n for w in ("w1", "w2") for t in out[w]["totals"])
    return out


# ---------------------------------------------------------------------- ready


def caught_up(port: int, calls: int) -> bool:
    """Health answers 200 caught up with the log, and the overview holds every stored call."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", "/api/v1/health")
        response = conn.getresponse()
        health = json.loads(response.read())
        if response.status != 200 or ((health.get("history") or {}).get("log") or {}).get("behind") != 0:
            return False
        return total_calls(port) == calls
    except (OSError, ValueError):  # still starting: refused, or not yet JSON
        return False
    finally:
        conn.close()


def time_ready(db: str, work: str, name: str, calls: int, timeout: float) -> dict:
    """A new server on ``db``: seconds from its process start until :func:`caught_up` (None: not within ``timeout``)."""
    with fleet(db, work, name) as (server,):
        while not caught_up(server.port, calls):
            if time.perf_counter() - server.started > timeout:
                return {"ready_s": None, "first_health_s": round(server.up_s, 3), "caught_up": False}
            time.sleep(0.01)
        ready = time.perf_counter() - server.started
    return {"ready_s": round(ready, 3), "first_health_s": round(server.up_s, 3), "caught_up": True}


def step_ready(args: argparse.Namespace, dbs: Databases, work: str, cache: dict[int, str]) -> dict:
    out: dict[str, Any] = {}
    for n in args.sizes:
        db = preloaded(cache, dbs, work, n, args)
        runs = [time_ready(db, work, f"ready{n}-{r}", n, args.settle_timeout) for r in range(args.ready_runs)]
        times = [r["ready_s"] for r in runs if r["caught_up"]]
        out[str(n)] = {"runs": runs, "ready_s_median": statistics.median(times) if times else None, **stored_bytes(db, n)}
        log(f"ready {n:,}: {[r['ready_s'] for r in runs]} s")
    return {"sizes": out, "agree": all(r["caught_up"] for row in out.values() for r in row["runs"])}


def stored_bytes(db: str, n: int) -> dict:
    """What ``n`` stored calls take in PostgreSQL: the database, and per call the calls table (indexes
    included) and what the events log still holds (folded rows are kept 10 minutes, then trimmed)."""
    import psycopg

    with psycopg.connect(db, autocommit=True, connect_timeout=10) as conn:
        database, calls, events = conn.execute(
            "SELECT pg_database_size(current_database()), pg_total_relation_size('calls'), "
            "pg_total_relation_size('events')").fetchone()
    return {"database_bytes": database, "calls_bytes_per_call": round(calls / n),
            "events_bytes_per_call": round(events / n)}


# ------------------------------------------------------------------------ e2e


def subscribers(port: int, count: int, expect: int, work: str, name: str, timeout: float) -> tuple[subprocess.Popen, dict]:
    """``bench/sse_sub.py`` with ``count`` readers of ``/api/v1/events`` on ``port``; returns once all are open."""
    files = {k: os.path.join(work, f"{name}-{k}") for k in ("ready", "out", "stop")}
    proc = subprocess.Popen([sys.executable, os.path.join(BENCH, "sse_sub.py"), "--port", str(port),
                             "--path", "/api/v1/events", "-S", str(count), "--expect", str(expect),
                             "--ready-file", files["ready"], "--out", files["out"], "--stop-file", files["stop"],
                             "--timeout", str(timeout)], cwd=PEER, env=dict(os.environ, PYTHONPATH=PEER))
    deadline = time.monotonic() + 90
    while not os.path.exists(files["ready"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"SSE subscribers on :{port} did not connect")
        time.sleep(0.05)
    return proc, files


def publish(port: int, calls: int, rate: float, seed: int, conns: int = 8) -> tuple[dict, dict]:
    """Single events to ``port`` on a schedule of ``rate`` a second; each send time by (event type, call id).

    Call j's start is due at 2j/rate and its end 1/rate later, both on one connection (an end never
    overtakes its start); calls take turns on ``conns`` keep-alive connections, so one slow
    acknowledgement does not hold up the schedule (one connection alone keeps ~100 events/s here).
    """
    sent: dict[tuple[str, str], int] = {}
    statuses: dict[int, int] = {}
    plan = []  # built before the clock starts: the loop only sends
    for j in range(calls):
        call = make_call(seed, E2E_BASE + j)
        plan.append([(kind, call.call_id, hc.build_request("POST", INGEST, HOST, json.dumps(
            {"type": kind, "data": data}, separators=(",", ":")).encode()))
            for kind, data in (("call_start", call.start_payload()), ("call_end", call.end_payload()))])

    async def go() -> None:
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(conns):
            pool.put_nowait(await hc.Conn(HOST, port).open())
        t0 = time.monotonic() + 0.05

        async def one(j: int) -> None:
            conn = await pool.get()
            try:
                for i, (kind, call_id, raw) in enumerate(plan[j]):
                    await asyncio.sleep(max(0.0, t0 + (2 * j + i) / rate - time.monotonic()))
                    sent[(kind, call_id)] = time.monotonic_ns()  # sse_sub.py stamps frames with the same clock
                    status = (await conn.request(raw, keep_body=False)).status
                    statuses[status] = statuses.get(status, 0) + 1
            finally:
                pool.put_nowait(conn)

        await asyncio.gather(*(one(j) for j in range(calls)))
        while not pool.empty():
            await pool.get_nowait().close()

    asyncio.run(go())
    return sent, statuses


def sent_rate(sent: dict) -> float:
    """Events a second from the first send to the last (the schedule as kept, before the last ack)."""
    span = (max(sent.values()) - min(sent.values())) / 1e9
    return round((len(sent) - 1) / span, 1) if span > 0 else 0.0


def latencies(records: list, sent: dict) -> dict:
    lat = [(t - sent[(kind, cid)]) / 1e6 for _conn, kind, cid, t in records if (kind, cid) in sent]
    return {"frames": len(lat), "p50_ms": round(hc.percentile(lat, 50), 2), "p99_ms": round(hc.percentile(lat, 99), 2),
            "max_ms": round(max(lat), 2) if lat else None}


def collect(proc: subprocess.Popen, files: dict, wait: float) -> dict:
    """The subscribers' records, once each has every frame (or after ``wait`` s: the rest counts as missing)."""
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        open(files["stop"], "w").close()
        proc.wait(30)
    with open(files["out"]) as fh:
        return json.load(fh)


def step_e2e(args: argparse.Namespace, dbs: Databases, work: str) -> dict:
    calls = max(1, int(args.rate * args.e2e_dur / 2))
    expect = 2 * calls  # frames per subscriber: every call's start and end
    half = {"A": args.S - args.S // 2, "B": args.S // 2}
    subs: dict[str, tuple[subprocess.Popen, dict]] = {}
    with fleet(dbs.new("e2e"), work, "e2e", 2) as servers:
        ports = dict(zip("AB", (s.port for s in servers)))
        try:
            for k in "AB":
                subs[k] = subscribers(ports[k], half[k], expect, work, f"sse-{k}", args.e2e_dur + 120)
            time.sleep(0.5)  # streams registered with the hub, as bench/w5.py waits
            t0 = time.perf_counter()
            sent, statuses = publish(ports["A"], calls, args.rate, args.seed)
            publish_s = time.perf_counter() - t0
            got = {k: collect(*subs[k], wait=30) for k in "AB"}
        finally:  # a failure above leaves no reader process behind
            for proc, _files in subs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
        agreed = settle(servers, calls, args.settle_timeout)
    out: dict[str, Any] = {"S": args.S, "rate": args.rate, "calls": calls, "events": len(sent),
                           "publish_s": round(publish_s, 2), "rate_achieved": sent_rate(sent),
                           "post_statuses": statuses, **agreed}
    for k in "AB":
        res = got[k]
        row = {"subscribers": half[k], "connected": res["connected"], "dropped": res["dropped"],
               "client_cpu_s": round(res["client_cpu_s"], 2), **latencies(res["records"], sent)}
        row["missing"] = half[k] * expect - row["frames"]
        out["ingest_server" if k == "A" else "other_server"] = row
        log(f"e2e {k}: {row['frames']:,} frames, p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms max {row['max_ms']} ms, "
            f"missing {row['missing']}")
    out["agree"] = agreed["agree"] and all(out[k]["missing"] == 0 for k in ("ingest_server", "other_server")) \
        and all(200 <= status < 300 for status in statuses)
    return out


# ----------------------------------------------------------------------- main


def table(res: dict) -> str:
    """The figures a reader wants first, one a line."""
    lines = []
    for writers, w in (res.get("pgwrite") or {}).get("writers", {}).items():
        lines.append(f"pgwrite {writers} writer(s), journal alone: {w['events_per_s']:>9,.0f} ev/s")
    for name, c in (res.get("ingest") or {}).get("configs", {}).items():
        lines.append(f"ingest {name:8} batched {c['batched']['events_per_s']:>9,.0f} ev/s  "
                     f"single {c['single']['events_per_s']:>7,.0f} ev/s  agree {c['batched']['agree'] and c['single']['agree']}")
    if "reads" in res:
        r = res["reads"]
        for k in READ_PATHS:
            lines.append(f"reads {k:9} -w1 {r['w1'][k]['req_per_s']:>8,.0f} req/s  -w2 {r['w2'][k]['req_per_s']:>8,.0f} "
                         f"req/s  ratio {r['ratio_w2_w1'][k]} (goal >= 1.6)")
    for n, row in (res.get("ready") or {}).get("sizes", {}).items():
        lines.append(f"ready  {int(n):>9,} calls: {row['ready_s_median']} s (median; goal <= 5 s at 100,000)")
    if "e2e" in res:
        e = res["e2e"]
        for k in ("other_server", "ingest_server"):
            lines.append(f"e2e    {k:13} p50 {e[k]['p50_ms']} ms  p99 {e[k]['p99_ms']} ms  max {e[k]['max_ms']} ms  "
                         f"missing {e[k]['missing']}")
    return "\n".join(lines)


def commit() -> str:
    proc = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip()


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(STEPS), help="comma list of " + ", ".join(STEPS))
    ap.add_argument("--fast", action="store_true", help="toy sizes for the smoke test: N=200, 2 s runs, 20 subscribers")
    ap.add_argument("--db-url", help="a PostgreSQL to create databases on (default: start one here)")
    ap.add_argument("--processes", default="1,2,4", help="ingest: servers on one database")
    ap.add_argument("--dur", type=float, default=5.0, help="ingest: seconds a run")
    ap.add_argument("--n", type=int, default=10_000, help="reads: calls stored")
    ap.add_argument("--wrk-dur", type=float, default=10.0, help="reads: seconds a wrk run")
    ap.add_argument("--sizes", default="10000,100000", help="ready: calls stored")
    ap.add_argument("--ready-runs", type=int, default=3, help="ready: starts per size")
    ap.add_argument("--S", type=int, default=1000, help="e2e: SSE subscribers, half on each server")
    ap.add_argument("--rate", type=float, default=200.0, help="e2e: events a second, posted to A")
    ap.add_argument("--e2e-dur", type=float, default=10.0, help="e2e: seconds of publishing")
    ap.add_argument("--settle-timeout", type=float, default=300.0, help="seconds for the processes to agree")
    ap.add_argument("--stop-grace", type=float, default=20.0, help="seconds a stopping server gets before SIGKILL")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="write the result (JSON) here")
    args = ap.parse_args()
    if args.fast:
        args.dur = args.wrk_dur = args.e2e_dur = 2.0
        args.n, args.sizes, args.S, args.ready_runs, args.settle_timeout = 200, "200", 20, 1, 30.0
        args.stop_grace = 1.0
    args.processes = [int(x) for x in args.processes.split(",")]
    args.sizes = [int(x) for x in str(args.sizes).split(",")]
    args.steps = [s for s in args.only.split(",") if s]
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        ap.error(f"unknown steps: {sorted(unknown)}")
    return args


def main() -> None:
    args = parse_args()
    STOPS["grace"] = args.stop_grace
    raise_nofile()
    res: dict[str, Any] = {"commit": commit(), "argv": sys.argv[1:],
                           "machine": {"nproc": len(os.sched_getaffinity(0)), "loadavg_start": open("/proc/loadavg").read().strip()},
                           "sizes": {"ingest_dur_s": args.dur, "processes": args.processes, "reads_calls": args.n,
                                     "wrk_dur_s": args.wrk_dur, "ready_calls": args.sizes, "ready_runs": args.ready_runs,
                                     "subscribers": args.S, "rate": args.rate, "e2e_dur_s": args.e2e_dur,
                                     "stop_grace_s": args.stop_grace}}
    work = tempfile.mkdtemp(prefix="pgmulti-")
    dbs = Databases(args.db_url)
    cache: dict[int, str] = {}  # calls stored -> its database, shared by reads and ready
    steps = {"pgwrite": lambda: step_pgwrite(args, dbs), "ingest": lambda: step_ingest(args, dbs, work), "reads": lambda: step_reads(args, dbs, work, cache),
             "ready": lambda: step_ready(args, dbs, work, cache), "e2e": lambda: step_e2e(args, dbs, work)}
    try:
        for step in args.steps:
            log(f"== {step}")
            res[step] = steps[step]()
    except BaseException:
        log(f"failed; server logs kept in {work}")
        raise
    else:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        dbs.close()
    res["machine"]["loadavg_end"] = open("/proc/loadavg").read().strip()
    res["forced_stops"] = STOPS["forced"]  # servers SIGKILLed after --stop-grace (see stop_all)
    write_result(res, args.out)
    print(table(res), file=sys.stderr)


if __name__ == "__main__":
    main()
