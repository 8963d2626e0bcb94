#!/usr/bin/env python3
"""W5 SSE fan-out, run identically against either target (the peer or patter-dash).

This is the harness's ``workloads.w5_sse`` with two corrections that keep it
target-neutral; everything else (fresh server per run with N=500 preloaded,
S subscribers in a separate process, one keep-alive publisher POSTing start
then end for 50 calls, paced at --rate lifecycles/s or closed-loop burst,
delivery latency = receive time - time just before the POST was written,
server CPU over first publish -> last receipt) is unchanged:

1. the publisher accepts any 2xx from the ingest path (the harness demands
   exactly 200; patter-dash's Patter-compatible ingest answers 202 Accepted);
2. the subscriber (``bench/sse_sub.py``) counts only blocks with a ``data:``
   field as events, as the SSE spec does (the harness counts patter-dash's
   opening ``retry: 2000`` block as an event and then reports one event lost
   per subscriber).

Usage (merges a "w5" section into --out, creating it if needed):
    /tmp/benchvenv/bin/python bench/w5.py --target patter --out bench/results/peer.json
    /tmp/benchvenv/bin/python bench/w5.py --target bench/peer_target.py --out bench/results/ours.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
sys.path.insert(0, PEER)

from harness import httpclient as hc  # noqa: E402
from harness.adapter import load_target  # noqa: E402
from harness.gen import make_call  # noqa: E402
from harness.proc import (  # noqa: E402
    cpu_seconds,
    hwm_kb,
    raise_nofile,
    reset_peak,
    rss_kb,
)
from harness.workloads import W5_BASE, log  # noqa: E402


def w5_sse(target, S: int, lifecycles: int, rate: float | None, seed: int, tag: int,
           server_kwargs: dict) -> dict:
    h = target.start_server(**server_kwargs)
    work = f"/tmp/benchw5-{h.port}-{S}-{tag}"
    os.makedirs(work, exist_ok=True)
    ready, outf, stopf = f"{work}/ready.json", f"{work}/out.json", f"{work}/stop"
    expect = lifecycles * target.sse_events_per_call()
    sub = subprocess.Popen([sys.executable, os.path.join(BENCH, "sse_sub.py"), "--port", str(h.port),
                            "--path", target.sse_path, "-S", str(S), "--expect", str(expect),
                            "--ready-file", ready, "--out", outf, "--stop-file", stopf,
                            "--timeout", "180"], cwd=PEER, env=dict(os.environ, PYTHONPATH=PEER))
    statuses: dict[int, int] = {}
    try:
        t_wait = time.time() + 90
        while not os.path.exists(ready) and time.time() < t_wait:
            time.sleep(0.05)
        with open(ready) as fh:
            json.load(fh)
        time.sleep(0.5)
        feeder_calls = [make_call(seed, W5_BASE + tag * 10_000 + j) for j in range(lifecycles)]
        pub: dict[tuple[str, str], int] = {}
        post_lat: list[float] = []

        async def publish():
            c = await hc.Conn(h.host, h.port).open()
            interval = (1.0 / rate) if rate else 0.0
            t_next = time.monotonic()
            types = list(target.sse_publish_events)
            for call in feeder_calls:
                for ti, body in enumerate(target.ingest_bodies(call)):
                    raw = hc.build_request("POST", target.ingest_path, h.host, body)
                    t = time.monotonic_ns()
                    pub[(types[ti] if ti < len(types) else f"e{ti}", call.call_id)] = t
                    r = await c.request(raw, keep_body=False)
                    post_lat.append((time.monotonic_ns() - t) / 1e6)
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if not 200 <= r.status < 300:  # harness: != 200
                        raise RuntimeError(f"ingest status {r.status}")
                if interval:
                    t_next += interval
                    d = t_next - time.monotonic()
                    if d > 0:
                        await asyncio.sleep(d)
            await c.close()

        cpu0 = cpu_seconds(h.pids)
        rss0 = rss_kb(h.pids)
        reset_peak(h.pids)
        t0 = time.monotonic()
        asyncio.run(publish())
        t_pub = time.monotonic() - t0
        deadline = time.time() + 60
        while sub.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        t_all = time.monotonic() - t0
        cpu1 = cpu_seconds(h.pids)
        peak = hwm_kb(h.pids)
        if sub.poll() is None:
            open(stopf, "w").close()
            sub.wait(timeout=30)
        with open(outf) as fh:
            res = json.load(fh)
    finally:
        if sub.poll() is None:
            sub.kill()
        target.stop_server(h)
    lat = []
    got = 0
    t_last = 0
    for _conn, ev, cid, t in res["records"]:
        tp = pub.get((ev, cid))
        if tp is None:
            continue
        got += 1
        t_last = max(t_last, t)
        lat.append((t - tp) / 1e6)
    if got:
        t_all = (t_last - min(pub.values())) / 1e9
    expected_total = res["connected"] * expect
    shutil.rmtree(work, ignore_errors=True)
    return {
        "S": S, "lifecycles": lifecycles, "rate_lifecycles_per_s": rate, "events_published": len(pub),
        "connected": res["connected"], "connect_failed": res["failed"],
        "subscribers_dropped": res["dropped"], "subscribers_incomplete": res["incomplete_open"],
        "events_expected": expected_total, "events_received": got, "events_lost": expected_total - got,
        "p50_ms": hc.percentile(lat, 50), "p99_ms": hc.percentile(lat, 99), "max_ms": max(lat) if lat else None,
        "publish_wall_s": t_pub, "window_s": t_all,
        "server_cpu_s": cpu1 - cpu0, "server_cpu_pct": 100 * (cpu1 - cpu0) / t_all,
        "delivered_msgs_per_s": got / t_all, "subscriber_process_cpu_s": res.get("client_cpu_s"),
        "post_p50_ms": hc.percentile(post_lat, 50), "post_p99_ms": hc.percentile(post_lat, 99),
        "post_statuses": statuses,
        "server_rss_mb": rss0 / 1024, "server_peak_rss_growth_mb": (peak - rss0) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--S", default="100,1000")
    ap.add_argument("--modes", default="paced,burst")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--lifecycles", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--extra", default="{}")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    raise_nofile()
    target_arg = args.target if not args.target.endswith(".py") else os.path.abspath(args.target)
    os.chdir(PEER)
    target = load_target(target_arg)
    extra = json.loads(args.extra)
    res = {}
    if os.path.exists(args.out):
        with open(args.out) as fh:
            res = json.load(fh)
    res.setdefault("meta", {}).setdefault("target", target.describe())
    res["meta"].setdefault("w5_driver", []).append({
        "script": "bench/w5.py", "argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_start": open("/proc/loadavg").read().strip()})
    res.setdefault("w5", {})  # runs accumulate across invocations (run.py interleaves targets)

    def save():
        with open(args.out + ".tmp", "w") as fh:
            json.dump(res, fh, indent=1, default=str)
        os.replace(args.out + ".tmp", args.out)

    # Interleave modes and subscriber counts across runs to spread machine noise.
    tag = 100 * len(res["meta"]["w5_driver"])  # distinct call ids per invocation
    for r in range(args.runs):
        for S in [int(x) for x in args.S.split(",")]:
            for mode in args.modes.split(","):
                key = f"S{S}_{mode}"
                tag += 1
                rate = args.rate if mode == "paced" else None
                out = w5_sse(target, S, args.lifecycles, rate, args.seed, tag,
                             dict(max_calls=args.n, preload=args.n, seed=args.seed, extra=extra))
                res["w5"].setdefault(key, []).append(out)
                log(f"W5 {target.name} {key} run{r}: p50={out['p50_ms']:.1f}ms p99={out['p99_ms']:.1f}ms "
                    f"lost={out['events_lost']} dropped={out['subscribers_dropped']} "
                    f"cpu={out['server_cpu_pct']:.0f}% post={out['post_statuses']}")
                save()
    res["meta"]["w5_driver"][-1]["loadavg_at_end"] = open("/proc/loadavg").read().strip()
    save()


if __name__ == "__main__":
    main()
