#!/usr/bin/env python3
"""Soak: S live SSE subscribers for D seconds under steady ingest and REST reads.

One patter-dash server (shipped gunicorn config, N calls preloaded). After a
baseline of the worker's open fds and RSS, a separate process opens S
``/api/v1/events`` streams; then for D seconds a publisher POSTs call
lifecycles (start + end) to ``/api/dashboard/ingest`` at --rate per second and
a reader issues REST GETs (list, detail, overview, costs, health in turn) at
--rest-rate per second on one keep-alive connection. Then every stream is
closed and, once the server reports 0 subscribers, fds and RSS are read again.

Then a second, short cycle reconnects all S clients, to tell a leak (RSS
grows again) from allocator high-water (it does not).

Pass criteria (printed and saved): every subscriber connected and received
every event published (no errors, no drops), REST p95 < 50 ms with no errors,
worker fds back to baseline (+-2) and RSS within 10 MB of baseline afterwards,
and cycle 2 clean with no further RSS growth (< 3 MB).

    /tmp/benchvenv/bin/python bench/soak.py --out bench/results/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
sys.path.insert(0, PEER)

from harness import httpclient as hc  # noqa: E402
from harness.proc import cpu_seconds, raise_nofile, rss_kb, status_kb  # noqa: E402


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# ------------------------------------------------------------------ subscribers
async def swarm(port: int, path: str, S: int, ready_file: str, stop_file: str, out_file: str) -> None:
    counts = [0] * S
    state = ["pending"] * S
    errors: list[str] = []
    opened = 0
    all_open = asyncio.Event()
    stop = asyncio.Event()
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").encode()

    async def sub(i: int) -> None:
        nonlocal opened
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(head[:60].decode("latin-1"))
            state[i] = "open"
        except Exception as exc:  # noqa: BLE001
            state[i] = "failed"
            errors.append(f"{i}: connect {exc!r}")
        opened += 1
        if opened == S:
            all_open.set()
        if state[i] != "open":
            return
        buf = b""
        try:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    state[i] = "ended_by_server"
                    return
                chunk = await reader.readexactly(size + 2)
                buf += chunk[:-2]
                while b"\n\n" in buf:
                    msg, buf = buf.split(b"\n\n", 1)
                    if any(line.startswith(b"data:") for line in msg.split(b"\n")):
                        counts[i] += 1
        except asyncio.CancelledError:
            state[i] = "closed_by_client"
            raise
        except Exception as exc:  # noqa: BLE001
            state[i] = "error"
            errors.append(f"{i}: {exc!r}")
        finally:
            if writer is not None:
                writer.close()

    tasks = []
    for i in range(S):
        tasks.append(asyncio.create_task(sub(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(all_open.wait(), timeout=120)
    with open(ready_file + ".tmp", "w") as fh:
        json.dump({"open": state.count("open"), "failed": state.count("failed")}, fh)
    os.replace(ready_file + ".tmp", ready_file)
    while not os.path.exists(stop_file):
        await asyncio.sleep(0.1)
    unexpected_end = [i for i, s in enumerate(state) if s != "open"]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.2)
    with open(out_file + ".tmp", "w") as fh:
        json.dump({"S": S, "counts_min": min(counts), "counts_max": max(counts), "counts": counts,
                   "not_open_at_stop": len(unexpected_end), "errors": errors[:50], "n_errors": len(errors),
                   "client_cpu_s": sum(os.times()[:2])}, fh)
    os.replace(out_file + ".tmp", out_file)


# ---------------------------------------------------------------- main driver
async def drive(h, target, seconds: float, rate: float, rest_rate: float, old_id: str, seed: int, tag: str = "1"):
    from harness.gen import make_call

    pub_count = 0
    post_lat: list[float] = []
    post_bad = 0
    rest_lat: dict[str, list[float]] = {}
    rest_bad = 0
    paths = {"list": "/api/v1/calls?limit=50", "detail": f"/api/v1/calls/{old_id}",
             "overview": "/api/v1/analytics/overview", "costs": "/api/v1/analytics/costs",
             "health": "/api/v1/health"}
    end_at = time.monotonic() + seconds
    calls = [make_call(seed, 60_000_000 + j) for j in range(300)]

    async def publisher():
        nonlocal pub_count, post_bad
        c = await hc.Conn(h.host, h.port).open()
        k = 0
        t_next = time.monotonic()
        while time.monotonic() < end_at:
            call = calls[k % len(calls)]
            new = ("CS" + tag + f"{k:031x}")[: len(call.call_id)]
            for body in target.ingest_bodies(call):
                body = body.replace(call.call_id.encode(), new.encode())
                t = time.perf_counter()
                r = await c.request(hc.build_request("POST", target.ingest_path, h.host, body), keep_body=False)
                post_lat.append(time.perf_counter() - t)
                if 200 <= r.status < 300:
                    pub_count += 1
                else:
                    post_bad += 1
            k += 1
            t_next += 1.0 / rate
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
        await c.close()

    async def reader():
        nonlocal rest_bad
        c = await hc.Conn(h.host, h.port).open()
        names = list(paths)
        k = 0
        t_next = time.monotonic()
        while time.monotonic() < end_at:
            name = names[k % len(names)]
            k += 1
            t = time.perf_counter()
            try:
                r = await c.request(hc.build_request("GET", paths[name], h.host), keep_body=False)
                ok = r.status == 200
            except Exception:  # noqa: BLE001
                ok = False
                await c.close()
                c = await hc.Conn(h.host, h.port).open()
            rest_lat.setdefault(name, []).append(time.perf_counter() - t)
            if not ok:
                rest_bad += 1
            t_next += 1.0 / rest_rate
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
        await c.close()

    samples = []

    async def sampler():
        while time.monotonic() < end_at:
            samples.append({"t": round(time.monotonic(), 1), "fds": fds(h.pids[1]), "rss_mb": rss_kb([h.pids[1]]) / 1024})
            await asyncio.sleep(min(5.0, max(0.0, end_at - time.monotonic())))

    await asyncio.gather(publisher(), reader(), sampler())
    return pub_count, post_lat, post_bad, rest_lat, rest_bad, samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--S", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=5.0, help="call lifecycles/s (2 events each)")
    ap.add_argument("--rest-rate", type=float, default=20.0, help="REST GETs/s")
    ap.add_argument("--cycle2-seconds", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--heartbeat", type=float, default=None,
                    help="server's PATTER_DASH_HEARTBEAT (default: as shipped, 15 s); a closed stream is noticed "
                         "at the next heartbeat, so a toy run shortens it")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait before each fds/RSS reading")
    ap.add_argument("--out", required=True)
    ap.add_argument("--swarm", nargs=5, metavar=("PORT", "S", "READY", "STOP", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    raise_nofile()
    if args.swarm:
        port, S, ready, stop, out = args.swarm
        try:
            import uvloop  # type: ignore
            uvloop.run(swarm(int(port), "/api/v1/events", int(S), ready, stop, out))
        except ImportError:
            asyncio.run(swarm(int(port), "/api/v1/events", int(S), ready, stop, out))
        return

    from harness.adapter import load_target
    from harness.workloads import log

    os.chdir(PEER)
    target = load_target(os.path.join(BENCH, "peer_target.py"))
    extra = {"env": {"PATTER_DASH_HEARTBEAT": str(args.heartbeat)}} if args.heartbeat else {}
    h = target.start_server(max_calls=args.n, preload=args.n, seed=args.seed, extra=extra)
    worker = h.pids[1]
    server_info = {k: v for k, v in h.info.items() if k != "health"}
    res: dict = {"meta": {"target": target.describe(), "argv": sys.argv, "S": args.S, "seconds": args.seconds,
                          "n": args.n, "rate_lifecycles_per_s": args.rate, "rest_rate": args.rest_rate,
                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "loadavg_at_start": open("/proc/loadavg").read().strip()},
                 "server_info": server_info}
    try:
        time.sleep(min(2.0, args.settle))
        base = {"fds": fds(worker), "rss_mb": rss_kb([worker]) / 1024,
                "threads": status_kb(worker, "Threads")}
        res["baseline"] = base
        log(f"soak baseline: {base}")
        cycle1 = run_cycle(h, target, args, worker, args.seconds, "1")
        res.update(cycle1.pop("summary"))
        pub_count, post_lat, post_bad, rest_lat, rest_bad, samples, swarm_res, counts, wall, cpu, health = cycle1["raw"]
        after = res["after"]
        # Second, short cycle: the same S clients reconnect. If RSS after it is no higher
        # than after the first, what stays above the baseline is allocator high-water
        # (freed memory kept by pymalloc/glibc), not a per-connection leak.
        cycle2 = run_cycle(h, target, args, worker, args.cycle2_seconds, "2")
        res["cycle2"] = cycle2.pop("summary")
        c2 = cycle2["raw"]
        res["cycle2"]["subscriber_events_min"] = min(c2[7])
        res["cycle2"]["events_published"] = c2[0]
        res["cycle2"]["errors"] = c2[6]["n_errors"] + c2[2] + c2[4]
        all_rest = [x for v in rest_lat.values() for x in v]
        res["results"] = {
            "events_published": pub_count, "post_errors": post_bad,
            "post_p50_ms": hc.percentile(post_lat, 50) * 1e3, "post_p99_ms": hc.percentile(post_lat, 99) * 1e3,
            "subscriber_events_min": min(counts), "subscriber_events_max": max(counts),
            "subscribers_missing_events": sum(1 for c in counts if c < pub_count),
            "swarm": swarm_res,
            "rest_requests": len(all_rest), "rest_errors": rest_bad,
            "rest_p50_ms": hc.percentile(all_rest, 50) * 1e3, "rest_p95_ms": hc.percentile(all_rest, 95) * 1e3,
            "rest_p99_ms": hc.percentile(all_rest, 99) * 1e3, "rest_max_ms": max(all_rest) * 1e3,
            "rest_p95_ms_by_path": {k: hc.percentile(v, 95) * 1e3 for k, v in rest_lat.items()},
            "server_cpu_pct": 100 * cpu / wall, "samples": samples,
            "health_after": health,
        }
        r = res["results"]
        checks = {
            "all subscribers connected": res["connect"]["open"] == args.S and res["connect"]["failed"] == 0,
            "no subscriber errors or drops": swarm_res["n_errors"] == 0 and swarm_res["not_open_at_stop"] == 0,
            "every subscriber got every event": r["subscribers_missing_events"] == 0 and r["subscriber_events_max"] == pub_count,
            "no ingest or REST errors": r["post_errors"] == 0 and r["rest_errors"] == 0,
            "REST p95 < 50 ms": r["rest_p95_ms"] < 50,
            "fds back to baseline (+-2)": abs(after["fds"] - base["fds"]) <= 2,
            "RSS within 10 MB of baseline": after["rss_mb"] - base["rss_mb"] < 10,
            "cycle 2 (reconnect all): no errors, every event, fds back": res["cycle2"]["errors"] == 0
            and res["cycle2"]["subscriber_events_min"] == res["cycle2"]["events_published"]
            and abs(res["cycle2"]["after"]["fds"] - base["fds"]) <= 2,
            "no RSS growth from cycle 1 to cycle 2 (< 3 MB)": res["cycle2"]["after"]["rss_mb"] - after["rss_mb"] < 3,
        }
        res["checks"] = checks
        res["pass"] = all(checks.values())
        log(f"soak: published {pub_count} events; subscriber events min/max {r['subscriber_events_min']}/"
            f"{r['subscriber_events_max']}; REST p95 {r['rest_p95_ms']:.1f} ms (max {r['rest_max_ms']:.0f} ms); "
            f"fds {base['fds']} -> {res['during_end']['fds']} -> {after['fds']}; RSS {base['rss_mb']:.1f} -> "
            f"{res['during_end']['rss_mb']:.1f} -> {after['rss_mb']:.1f} MB; after cycle 2 "
            f"{res['cycle2']['after']['rss_mb']:.1f} MB, fds {res['cycle2']['after']['fds']}")
        for k, v in checks.items():
            log(f"  {'PASS' if v else 'FAIL'}  {k}")
    finally:
        target.stop_server(h)
        res["meta"]["loadavg_at_end"] = open("/proc/loadavg").read().strip()
        if args.out != "-":
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as fh:
                json.dump(res, fh, indent=1, default=str)


def run_cycle(h, target, args, worker, seconds, tag):
    """S clients connect, D seconds of ingest + REST, clients close; fds/RSS before, during, after."""
    from harness.gen import make_call
    from harness.workloads import log

    work = f"/tmp/benchsoak-{h.port}-{tag}"
    os.makedirs(work, exist_ok=True)
    ready, stop, out = f"{work}/ready.json", f"{work}/stop", f"{work}/out.json"
    summary: dict = {}
    sub = None
    try:
        sub = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--out", "-", "--swarm", str(h.port),
                                str(args.S), ready, stop, out], cwd=PEER, env=dict(os.environ, PYTHONPATH=PEER))
        t_wait = time.time() + 150
        while not os.path.exists(ready):
            if sub.poll() is not None or time.time() > t_wait:
                raise RuntimeError("subscribers did not connect")
            time.sleep(0.1)
        with open(ready) as fh:
            summary["connect"] = json.load(fh)
        time.sleep(min(1.0, args.settle))
        summary["during_start"] = {"fds": fds(worker), "rss_mb": rss_kb([worker]) / 1024}
        log(f"cycle {tag}: {summary['connect']} subscribers connected; fds {summary['during_start']['fds']}; "
            f"soaking {seconds}s")
        old_id = make_call(args.seed, args.n - 1).call_id  # newest preloaded call: not evicted during the soak
        cpu0 = cpu_seconds(h.pids)
        t0 = time.monotonic()
        pub_count, post_lat, post_bad, rest_lat, rest_bad, samples = asyncio.run(
            drive(h, target, seconds, args.rate, args.rest_rate, old_id, args.seed, tag))
        wall = time.monotonic() - t0
        cpu = cpu_seconds(h.pids) - cpu0
        time.sleep(min(1.0, args.settle))  # let the last events reach every subscriber
        summary["during_end"] = {"fds": fds(worker), "rss_mb": rss_kb([worker]) / 1024}
        open(stop, "w").close()
        sub.wait(timeout=60)
        with open(out) as fh:
            swarm_res = json.load(fh)
        counts = swarm_res.pop("counts")
        # SSE readers only notice a closed client when a write fails (the heartbeat,
        # every PATTER_DASH_HEARTBEAT s), so this typically takes 1-2 heartbeats.
        t_close = time.time()
        health = None
        while time.time() - t_close < 60:
            _st, health, _ = _get(h, "/api/v1/health")
            if health["subscribers"]["count"] == 0:
                break
            time.sleep(0.2)
        summary["subscribers_gone_after_s"] = round(time.time() - t_close, 2)
        log(f"cycle {tag}: server saw every stream closed after {summary['subscribers_gone_after_s']} s")
        time.sleep(args.settle)
        summary["after"] = {"fds": fds(worker), "rss_mb": rss_kb([worker]) / 1024,
                            "threads": status_kb(worker, "Threads")}
        return {"summary": summary, "raw": (pub_count, post_lat, post_bad, rest_lat, rest_bad, samples, swarm_res,
                                            counts, wall, cpu, health)}
    finally:
        if sub is not None and sub.poll() is None:
            open(stop, "w").close()
            try:
                sub.wait(timeout=20)
            except subprocess.TimeoutExpired:
                sub.kill()


def _get(h, path):
    raw = hc.build_request("GET", path, h.host)
    r, _ = asyncio.run(hc.one_shot(h.host, h.port, raw))
    return r.status, r.json(), len(r.body or b"")


if __name__ == "__main__":
    main()
