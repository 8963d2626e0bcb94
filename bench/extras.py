#!/usr/bin/env python3
"""Figures the peer harness does not take, on one patter-dash server with N calls.

* ``pause``: the longest stall seen by a ``GET /api/v1/health`` poller (one
  request every 10 ms on its own keep-alive connection) while one long request
  runs on another connection: the JSON and CSV exports of all N calls, and
  overview/costs. (The harness's blocking probe polls ``/health``, which is
  patter-dash's 404 page, not its health route.)
* ``list_full``: W3-style wrk run of ``/api/v1/calls?limit=50&full=1`` -- full
  records per row, the same content the peer's list returns (patter-dash's
  default list returns summaries).
* ``batched``: HTTP ingest through ``POST /api/v1/ingest``, closed loop for
  ``--dur`` s per run: one envelope per request (``single``), and
  ``{"events": [...]}`` bodies of B events (start+end of B/2 calls). Every call
  is distinct (pool of 300 synthetic calls, fresh ids substituted).

* ``w3clean``: W3 (``wrk -t1 -c16``) once per endpoint for ``--w3-dur`` s,
  after waiting until the server has drained the previous endpoint's backlog
  (a health GET answered in < 50 ms twice in a row). The harness runs the
  endpoints back to back, so at N=100,000 a slow server is still working
  through the previous wrk run's 16 abandoned requests when the next run
  starts (the peer then scores 0 req/s on costs with 5 s runs).

With ``--target patter`` only ``pause`` and ``w3clean`` run (probe ``/health``, export
``/api/dashboard/export/calls?format=json|csv``, i.e. the peer's routes).

    /tmp/benchvenv/bin/python bench/extras.py --target bench/peer_target.py --n 100000 --out bench/results/ours-extras.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
sys.path.insert(0, PEER)

from harness import httpclient as hc  # noqa: E402
from harness.adapter import load_target  # noqa: E402
from harness.gen import make_call  # noqa: E402
from harness.proc import cpu_seconds, raise_nofile, rss_kb  # noqa: E402
from harness.workloads import log, wrk  # noqa: E402

BATCH_BASE = 50_000_000


def pause_probe(h, slow_path: str, probe_path: str, interval: float = 0.01) -> dict:
    async def go():
        slow = await hc.Conn(h.host, h.port).open()
        probe = await hc.Conn(h.host, h.port).open()
        lat: list[float] = []
        statuses: dict[int, int] = {}
        done = asyncio.Event()

        async def do_slow():
            t = time.perf_counter()
            r = await slow.request(hc.build_request("GET", slow_path, h.host), keep_body=False)
            done.set()
            return time.perf_counter() - t, r.nbytes, r.status

        async def do_probe():
            await asyncio.sleep(0.02)
            while not done.is_set():
                t = time.perf_counter()
                r = await probe.request(hc.build_request("GET", probe_path, h.host))
                lat.append(time.perf_counter() - t)
                statuses[r.status] = statuses.get(r.status, 0) + 1
                await asyncio.sleep(interval)

        (slow_s, nbytes, st), _ = await asyncio.gather(do_slow(), do_probe())
        await slow.close()
        await probe.close()
        return slow_s, nbytes, st, lat, statuses

    rss0 = rss_kb(h.pids)
    slow_s, nbytes, st, lat, statuses = asyncio.run(go())
    return {"slow_request": f"GET {slow_path}", "slow_status": st, "slow_wall_s": slow_s, "slow_bytes": nbytes,
            "probe": f"GET {probe_path}", "probe_statuses": statuses, "probe_count": len(lat),
            "probe_max_ms": max(lat) * 1e3 if lat else None,
            "probe_p50_ms": hc.percentile(lat, 50) * 1e3 if lat else None,
            "probe_p99_ms": hc.percentile(lat, 99) * 1e3 if lat else None,
            "rss_before_mb": rss0 / 1024, "rss_after_mb": rss_kb(h.pids) / 1024}


class BatchFeeder:
    """Bodies for POST /api/v1/ingest: ``events_per_req`` envelopes, start+end per call."""

    def __init__(self, host: str, seed: int, base: int, events_per_req: int, pool: int = 300):
        self.host = host
        self.calls_per_req = max(1, events_per_req // 2)
        self.single = events_per_req == 1
        self.pieces: list[tuple[bytes, list[bytes]]] = []
        for j in range(pool):
            c = make_call(seed, base + j)
            env = [json.dumps({"type": "call_start", "data": c.start_payload()}, separators=(",", ":")).encode(),
                   json.dumps({"type": "call_end", "data": c.end_payload()}, separators=(",", ":")).encode()]
            self.pieces.append((c.call_id.encode(), env))
        self.k = 0
        self.tag = f"{base:08x}"[-8:]
        self.pending: list[bytes] = []

    def _fresh(self) -> list[bytes]:
        old, env = self.pieces[self.k % len(self.pieces)]
        new = ("CB" + self.tag + f"{self.k:024x}")[: len(old)].encode()
        self.k += 1
        return [e.replace(old, new) for e in env]

    def next(self, _wid: int = 0) -> list[bytes]:
        if self.single:
            if not self.pending:
                self.pending = self._fresh()
            body = self.pending.pop(0)
            return [hc.build_request("POST", "/api/v1/ingest", self.host, body)]
        envs: list[bytes] = []
        for _ in range(self.calls_per_req):
            envs += self._fresh()
        body = b'{"events":[' + b",".join(envs) + b"]}"
        return [hc.build_request("POST", "/api/v1/ingest", self.host, body)]


def batched_ingest(h, seed: int, runs: int, dur: float, sizes: list[int], concs: list[int]) -> dict:
    out: dict = {}
    tag = 0
    for size in sizes:
        for conc in concs:
            key = f"events{size}_c{conc}"
            rs = []
            for r in range(runs):
                tag += 1
                feeder = BatchFeeder(h.host, seed, BATCH_BASE + tag * 100_000, size)
                body_bytes = len(feeder.next()[0])
                feeder.k = 0
                cpu0 = cpu_seconds(h.pids)
                res = asyncio.run(hc.closed_loop(h.host, h.port, conc, dur, feeder.next))
                cpu1 = cpu_seconds(h.pids)
                lat = res["latencies"]
                rps = res["requests"] / res["wall_s"]
                rs.append({"events_per_req": size, "conc": conc, "req_per_s": rps, "events_per_s": rps * size,
                           "calls_per_s": rps * size / 2, "request_bytes": body_bytes,
                           "p50_ms": hc.percentile(lat, 50) * 1e3, "p99_ms": hc.percentile(lat, 99) * 1e3,
                           "requests": res["requests"], "non2xx": res["non2xx"], "exc": res["exc"],
                           "server_cpu_pct": 100 * (cpu1 - cpu0) / res["wall_s"]})
                log(f"batched {key} run{r}: {rps * size:,.0f} events/s ({rps:,.1f} req/s) "
                    f"p50={rs[-1]['p50_ms']:.1f}ms p99={rs[-1]['p99_ms']:.1f}ms errs={res['non2xx']}+{res['exc']}")
            out[key] = rs
    return out


def drain(h, probe_path: str, timeout: float = 120.0) -> float:
    """Wait until two consecutive probes answer in < 50 ms; returns the seconds waited."""
    t0 = time.time()
    good = 0
    while time.time() - t0 < timeout and good < 2:
        r, dt = asyncio.run(hc.one_shot(h.host, h.port, hc.build_request("GET", probe_path, h.host)))
        good = good + 1 if dt < 0.05 else 0
        time.sleep(0.05)
    return time.time() - t0


def w3_clean(target, h, old_id: str, runs: int, dur: float, probe_path: str) -> dict:
    paths = target.read_paths(old_id)
    out: dict = {"paths": paths, "dur": dur, "runs": {k: [] for k in paths}}
    for r in range(runs):
        for k, p in paths.items():
            waited = drain(h, probe_path)
            cpu0 = cpu_seconds(h.pids)
            w = wrk(h.base + p, 16, dur)
            w.pop("raw", None)
            w["server_cpu_pct"] = 100 * (cpu_seconds(h.pids) - cpu0) / dur
            w["drain_wait_s"] = waited
            out["runs"][k].append(w)
            log(f"w3clean {k} run{r}: {w['req_per_s']:,.1f} req/s p50={w['p50_ms']:.1f}ms p99={w['p99_ms']:.1f}ms "
                f"(drained {waited:.1f}s before) errs={w['errors']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dur", type=float, default=5.0)
    ap.add_argument("--batch-sizes", default="1,20,200")
    ap.add_argument("--batch-conc", default="1,4")
    ap.add_argument("--w3-dur", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="pause,list_full,batched")
    ap.add_argument("--extra", default="{}")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    raise_nofile()
    target_arg = args.target if not args.target.endswith(".py") else os.path.abspath(args.target)
    os.chdir(PEER)
    target = load_target(target_arg)
    ours = target.name != "patter"
    steps = set(args.only.split(","))
    res = {"meta": {"target": target.describe(), "argv": sys.argv, "n": args.n,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "loadavg_at_start": open("/proc/loadavg").read().strip()}}

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as fh:
            json.dump(res, fh, indent=1, default=str)
        os.replace(args.out + ".tmp", args.out)

    log(f"== extras {target.name} N={args.n}: starting server")
    h = target.start_server(max_calls=args.n, preload=args.n, seed=args.seed, extra=json.loads(args.extra))
    try:
        res["server_info"] = {k: v for k, v in h.info.items() if k != "health"}
        log(f"preloaded in {h.info.get('preload_s')}s")
        save()
        if "pause" in steps:
            if ours:
                probe = "/api/v1/health"
                slows = ["/api/v1/export/json", "/api/v1/export/csv", "/api/v1/analytics/overview",
                         "/api/v1/analytics/costs", "/api/v1/calls?limit=1000&full=1"]
            else:
                probe = "/health"
                slows = ["/api/dashboard/export/calls?format=json", "/api/dashboard/export/calls?format=csv",
                         "/api/v1/analytics/overview", "/api/v1/analytics/costs"]
            res["pause"] = []
            for r in range(args.runs):
                for slow in slows:
                    p = pause_probe(h, slow, probe)
                    res["pause"].append(p)
                    log(f"pause run{r} {slow}: slow {p['slow_wall_s']:.2f}s {p['slow_bytes']/1e6:.1f}MB; "
                        f"probe n={p['probe_count']} max={p['probe_max_ms']}ms p99={p['probe_p99_ms']}ms")
                    save()
        if "w3clean" in steps:
            res["w3clean"] = w3_clean(target, h, make_call(args.seed, 0).call_id, args.runs, args.w3_dur,
                                      "/api/v1/health" if ours else "/health")
            save()
        if ours and "list_full" in steps:
            res["list_full"] = []
            for r in range(args.runs):
                w = wrk(h.base + "/api/v1/calls?limit=50&full=1", 16, args.dur)
                w.pop("raw", None)
                res["list_full"].append(w)
                log(f"list full=1 run{r}: {w['req_per_s']:.1f} req/s p99={w['p99_ms']:.1f}ms "
                    f"{w['bytes_per_req']/1e3:.0f}KB/resp errs={w['errors']}")
                save()
        if ours and "batched" in steps:
            res["batched"] = batched_ingest(h, args.seed, args.runs, args.dur,
                                            [int(x) for x in args.batch_sizes.split(",")],
                                            [int(x) for x in args.batch_conc.split(",")])
            save()
    finally:
        target.stop_server(h)
    res["meta"]["loadavg_at_end"] = open("/proc/loadavg").read().strip()
    save()
    log(f"extras done -> {args.out}")


if __name__ == "__main__":
    main()
