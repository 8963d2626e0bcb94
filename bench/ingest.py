#!/usr/bin/env python3
"""Write-path figures over HTTP and WebSocket (issue 11), ours and the peer's in one run.

Steps (``--only``, comma list):

* ``w2``: the harness's W2 (single-event ``POST /api/dashboard/ingest``, the
  Patter path, start+end of distinct calls, closed loop) at c1 and c16, on
  ``--target patter`` or on ours; on ours also ``floor``.
* ``floor`` (ours): the same closed loop, the same bodies, on
  ``POST /bench/floor`` (reads the body, answers ``{"ok": true}``) served by
  the same worker (``bench/experiments/floor_app.py``): the gunicorn + gevent +
  Flask per-request floor.
* ``batched`` (ours): ``POST /api/v1/ingest`` with 200 events a body at c1/c4/c16
  (``extras.batched_ingest``).
* ``ws`` (ours): ``/api/v1/ingest/ws``, each connection sends one frame and
  waits for its ack before the next: 1 and 200 events a frame, 1 and 4 connections.
* ``gcwindow`` (ours, at ``--n``): wrk ``-t1 -c16`` on ``/api/v1/calls?limit=50`` for
  ``--dur`` s; a full ``gc.collect()`` is run in the worker halfway through
  (``POST /bench/gc``): p99/max of the run and the collection's own time.
* ``loadpause`` (ours): on a fresh server, ``--n`` calls are loaded through
  ``/api/v1/ingest`` (200 events a body, 4 connections) while a health poller
  (one GET every 10 ms on its own connection) records its longest wait.

    /tmp/benchvenv/bin/python bench/ingest.py --target patter --only w2 --out bench/results/ingest-peer-<commit>.json
    /tmp/benchvenv/bin/python bench/ingest.py --target bench/peer_target.py --out bench/results/ingest-ours-<commit>.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
sys.path.insert(0, PEER)
sys.path.insert(0, BENCH)

from extras import BatchFeeder, batched_ingest  # noqa: E402
from harness import httpclient as hc  # noqa: E402
from harness import workloads as W  # noqa: E402
from harness.adapter import load_target  # noqa: E402
from harness.proc import cpu_seconds  # noqa: E402
from harness.workloads import log  # noqa: E402

EXPERIMENTS = os.path.join(BENCH, "experiments")
FLOOR_APP = {"app": "floor_app:app", "pythonpath": [EXPERIMENTS]}


def floor(target, h, runs: int, dur: float, concs: list[int], seed: int) -> dict:
    out: dict = {}
    for conc in concs:
        rs = []
        for r in range(runs):
            feeder = W.IngestFeeder(target, h.host, seed, 300, 70_000_000 + (conc * 10 + r) * 10_000)
            feeder.path = "/bench/floor"
            res = asyncio.run(hc.closed_loop(h.host, h.port, conc, dur, feeder.next))
            lat = res["latencies"]
            rs.append({"req_per_s": res["requests"] / res["wall_s"], "p50_ms": hc.percentile(lat, 50) * 1e3,
                       "p99_ms": hc.percentile(lat, 99) * 1e3, "non2xx": res["non2xx"], "exc": res["exc"]})
            log(f"floor c{conc} run{r}: {rs[-1]['req_per_s']:,.0f} req/s p99={rs[-1]['p99_ms']:.2f}ms")
        out[f"c{conc}"] = rs
    return out


def ws_ingest(h, seed: int, dur: float, sizes: list[int], concs: list[int]) -> dict:
    import websockets

    out: dict = {}
    tag = 0
    for size in sizes:
        for conc in concs:
            tag += 1
            feeder = BatchFeeder(h.host, seed, 80_000_000 + tag * 1_000_000, max(size, 2))

            def frame() -> bytes:
                envs = feeder._fresh()
                if size == 1:
                    return envs[0] if feeder.k % 2 else envs[1]
                more = []
                while len(more) < size:
                    more += feeder._fresh()
                return b'{"events":[' + b",".join(more[:size]) + b"]}"

            frames = [frame() for _ in range(4000 if size == 1 else 400)]
            stats = {"frames": 0, "events": 0, "bad": 0}
            lat: list[float] = []

            async def conn(i: int) -> None:
                async with websockets.connect(f"ws://{h.host}:{h.port}/api/v1/ingest/ws", max_size=None) as ws:
                    k = i
                    while time.perf_counter() < stop:
                        t0 = time.perf_counter()
                        await ws.send(frames[k % len(frames)].decode())
                        ack = json.loads(await ws.recv())
                        lat.append(time.perf_counter() - t0)
                        k += conc
                        if ack.get("ok"):
                            stats["frames"] += 1
                            stats["events"] += size
                        else:
                            stats["bad"] += 1

            async def go() -> None:
                await asyncio.gather(*(conn(i) for i in range(conc)))

            stop = time.perf_counter() + dur
            t0 = time.perf_counter()
            asyncio.run(go())
            wall = time.perf_counter() - t0
            key = f"events{size}_c{conc}"
            out[key] = {"events_per_s": stats["events"] / wall, "frames_per_s": stats["frames"] / wall,
                        "p50_ms": hc.percentile(lat, 50) * 1e3, "p99_ms": hc.percentile(lat, 99) * 1e3, **stats}
            log(f"ws {key}: {out[key]['events_per_s']:,.0f} events/s acked, p99={out[key]['p99_ms']:.1f}ms bad={stats['bad']}")
    return out


def gc_window(h, dur: float) -> dict:
    import urllib.request

    result: dict = {}

    def collect() -> None:
        time.sleep(dur / 2)
        req = urllib.request.Request(f"http://{h.host}:{h.port}/bench/gc", method="POST", data=b"")
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as r:
            result.update(json.loads(r.read()))
        result["request_s"] = time.perf_counter() - t0

    t = threading.Thread(target=collect)
    t.start()
    res = W.wrk(f"http://{h.host}:{h.port}/api/v1/calls?limit=50", 16, dur)
    t.join()
    log(f"gcwindow: wrk {res.get('req_per_s', 0):,.0f} req/s p99={res.get('p99_ms')}ms max={res.get('max_ms')}ms; "
        f"gc.collect {result.get('seconds', 0) * 1e3:.1f} ms ({result.get('tracked')} tracked)")
    return {"wrk": res, "collect": result}


def load_pause(h, n: int, seed: int) -> dict:
    feeder = BatchFeeder(h.host, seed, 90_000_000, 200)
    bodies = -(-n // 100)

    async def go():
        probe = await hc.Conn(h.host, h.port).open()
        lat: list[float] = []
        done = asyncio.Event()
        raw = hc.build_request("GET", "/api/v1/health", h.host)

        async def poll():
            while not done.is_set():
                t0 = time.perf_counter()
                await probe.request(raw, keep_body=False)
                lat.append(time.perf_counter() - t0)
                await asyncio.sleep(0.01)

        async def load():
            t0 = time.perf_counter()
            res = await hc.closed_loop(h.host, h.port, 4, 3600, feeder.next, max_requests=bodies)
            done.set()
            return res, time.perf_counter() - t0

        (res, wall), _ = await asyncio.gather(load(), poll())
        await probe.close()
        return res, wall, lat

    cpu0 = cpu_seconds(h.pids)
    res, wall, lat = asyncio.run(go())
    cpu1 = cpu_seconds(h.pids)
    out = {"calls": n, "events": bodies * 200, "wall_s": wall, "events_per_s": bodies * 200 / wall,
           "non2xx": res["non2xx"], "exc": res["exc"], "probe_max_ms": max(lat) * 1e3, "probe_p99_ms": hc.percentile(lat, 99) * 1e3,
           "probes": len(lat), "server_cpu_pct": 100 * (cpu1 - cpu0) / wall}
    log(f"loadpause: {n:,} calls in {wall:.1f}s ({out['events_per_s']:,.0f} events/s); health max {out['probe_max_ms']:.1f}ms "
        f"p99 {out['probe_p99_ms']:.1f}ms over {len(lat)} polls")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--only", default="w2,floor,batched,ws,gcwindow,loadpause")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--dur", type=float, default=5.0)
    ap.add_argument("--n", type=int, default=100_000, help="calls for gcwindow and loadpause")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.chdir(PEER)
    target = load_target(args.target)
    ours = args.target != "patter"
    steps = set(args.only.split(","))
    res: dict = {"target": args.target, "commit": _commit(), "started": time.time()}

    def save() -> None:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)

    if steps & {"w2", "floor", "batched", "ws"}:
        h = target.start_server(max_calls=10_000, preload=500, seed=args.seed, extra=FLOOR_APP if ours else None)
        try:
            if "w2" in steps:
                res["w2"] = W.w2_ingest(target, h, args.runs, args.dur, [1, 16], args.seed, 7)
                save()
            if ours and "floor" in steps:
                res["floor"] = floor(target, h, args.runs, args.dur, [1, 16], args.seed)
                save()
            if ours and "batched" in steps:
                res["batched"] = batched_ingest(h, args.seed, args.runs, args.dur, [200], [1, 4, 16])
                save()
            if ours and "ws" in steps:
                res["ws"] = ws_ingest(h, args.seed, args.dur, [1, 200], [1, 4])
                save()
        finally:
            target.stop_server(h)
    if ours and "gcwindow" in steps:
        h = target.start_server(max_calls=args.n, preload=args.n, seed=args.seed, extra=FLOOR_APP)
        try:
            res["gcwindow"] = [gc_window(h, max(args.dur, 10.0)) for _ in range(args.runs)]
            save()
        finally:
            target.stop_server(h)
    if ours and "loadpause" in steps:
        h = target.start_server(max_calls=args.n, preload=0, seed=args.seed)
        try:
            res["loadpause"] = load_pause(h, args.n, args.seed)
            save()
        finally:
            target.stop_server(h)
    save()


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", BENCH, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
