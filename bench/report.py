#!/usr/bin/env python3
"""bench/results/*.json -> bench/results/summary.md (headline tables, ours vs peer).

Cells are the median over runs, with (min-max) when there was more than one
run; ratio = ours / peer (for latency, time and memory lower is better, so a
ratio < 1 favours patter-dash there).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

GOAL_W6_BYTES = 23_675 / 2  # half the peer's published 23.7 KB


def load(path):
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    return {}


def vals(rows, key):
    return [r[key] for r in rows if r.get(key) is not None]


def med(v):
    return statistics.median(v) if v else None


def fmt(v, digits=None):
    if v is None:
        return "–"
    if isinstance(v, int) or (digits is None and float(v).is_integer() and abs(v) < 1e15):
        return f"{int(v):,}"
    a = abs(v)
    if digits is not None:
        return f"{v:,.{digits}f}"
    return f"{v:,.0f}" if a >= 100 else f"{v:,.1f}" if a >= 10 else f"{v:,.2f}" if a >= 0.1 else f"{v:.3f}"


def cell(v):
    if not v:
        return "–"
    m = med(v)
    if len(v) > 1:
        return f"{fmt(m)} ({fmt(min(v))}–{fmt(max(v))})"
    return fmt(m)


def ratio(a, b):
    ma, mb = med(a or []), med(b or [])
    if ma is None or mb in (None, 0):
        return "–"
    r = ma / mb
    return f"{r:,.0f}×" if r >= 100 else f"{r:,.1f}×" if r >= 10 else f"{r:.2f}×"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args()
    d = args.dir
    ours, peer = load(f"{d}/ours.json"), load(f"{d}/peer.json")
    ox, px = load(f"{d}/ours-extras.json"), load(f"{d}/peer-extras.json")
    soak, var = load(f"{d}/soak.json"), load(f"{d}/ours-noaccesslog.json")
    oc, pc = load(f"{d}/ours-w3clean.json"), load(f"{d}/peer-w3clean.json")
    L: list[str] = []
    add = L.append
    sizes = sorted({int(n) for n in list(ours.get("w3", {})) + list(ours.get("w1", {}))})
    meta = ours.get("meta", {})
    m = meta.get("machine", {})
    add("# Benchmark summary: patter-dash vs Patter 0.7.0 dashboard (same session)\n")
    runs = load(f"{d}/run-meta.json") or []
    starts = sorted(x for x in (peer.get("meta", {}).get("started"), meta.get("started"), soak.get("meta", {}).get("started"),
                                ox.get("meta", {}).get("started"), oc.get("meta", {}).get("started")) if x)
    when = "; ".join(f"{r['started']} → {r.get('finished', '?')} (steps {','.join(r['steps'])}, load "
                     f"{r['loadavg_at_start'].split()[0]} → {r.get('loadavg_at_end', '? ').split()[0]})" for r in runs) \
        or f"{starts[0] if starts else '?'} … {starts[-1] if starts else '?'}"
    add(f"Runs: {when}. Machine: {m.get('nproc')} cores ({m.get('cpu_model', '?')}), "
        f"{(m.get('mem_total_kb') or 0) / 2**20:.0f} GiB, {m.get('platform', '?')}, Python {m.get('python')}, "
        f"wrk {((m.get('wrk') or '? ?').split() + ['?'])[1]}. Other work (tests, a browser) shared the machine.")
    t = meta.get("target", {})
    add(f"patter-dash {t.get('commit', '?')}{' (uncommitted changes)' if t.get('dirty') else ''}; "
        f"gunicorn {t.get('gunicorn', '?')}, gevent {t.get('gevent', '?')}, flask {t.get('flask', '?')}; "
        f"peer getpatter {peer.get('meta', {}).get('target', {}).get('getpatter', '?')}.\n")
    commits = set()
    for doc in (ours, ox, oc, soak, var):
        for info in list(doc.get("server_info", {}).values()) if isinstance(doc.get("server_info"), dict) and \
                all(isinstance(v, dict) for v in doc.get("server_info", {}).values()) else [doc.get("server_info", {})]:
            if isinstance(info, dict) and info.get("commit"):
                commits.add(info["commit"] + (" (dirty)" if info.get("dirty") else ""))
        tc = doc.get("meta", {}).get("target", {})
        if tc.get("commit"):
            commits.add(tc["commit"] + (" (dirty)" if tc.get("dirty") else ""))
    if len(commits) > 1:
        add(f"**Warning: these results mix code versions {sorted(commits)}; rerun `bench/run.py` (it pins one).**\n")
    elif commits:
        add(f"Code under test: patter-dash {commits.pop()} (every server and in-process run).\n")
    add("Cells: median (min–max) over runs. Ratio = patter-dash / peer.\n")

    # ---------------------------------------------------------------- issue 1
    add("## 1. Foundation: ingest and memory\n")
    add("| figure | N | patter-dash | peer | ratio |")
    add("|---|---|---|---|---|")
    for n in sizes:
        a = vals(ours.get("w1", {}).get(str(n), {}).get("runs", []), "events_per_s")
        b = vals(peer.get("w1", {}).get(str(n), {}).get("runs", []), "events_per_s")
        if a or b:
            add(f"| W1 in-process feed → store, events/s (8 per call) | {n:,} | {cell(a)} | {cell(b)} | {ratio(a, b)} |")
    for c in ("c1", "c16"):
        for n in sizes:
            a = vals(ours.get("w2", {}).get(str(n), {}).get(c, []), "req_per_s")
            b = vals(peer.get("w2", {}).get(str(n), {}).get(c, []), "req_per_s")
            if a or b:
                add(f"| W2 HTTP ingest `/api/dashboard/ingest`, events/s (= req/s), {c} | {n:,} | {cell(a)} | {cell(b)} | {ratio(a, b)} |")
    for c in ("c1", "c16"):
        for n in sizes:
            a = vals(ours.get("w2", {}).get(str(n), {}).get(c, []), "p99_ms")
            b = vals(peer.get("w2", {}).get(str(n), {}).get(c, []), "p99_ms")
            if a or b:
                add(f"| W2 ingest p99 ms, {c} | {n:,} | {cell(a)} | {cell(b)} | {ratio(a, b)} |")
    for n in sizes:
        a = vals(ours.get("w2b", {}).get(str(n), {}).get("c1", []), "req_per_s")
        b = vals(peer.get("w2b", {}).get(str(n), {}).get("c1", []), "req_per_s")
        if a or b:
            add(f"| W2b end-only ingest (no prior start), req/s, c1 | {n:,} | {cell(a)} | {cell(b)} | {ratio(a, b)} |")
    bn = ox.get("meta", {}).get("n")
    peer_c16 = vals(peer.get("w2", {}).get(str(bn), {}).get("c16", []), "req_per_s")
    for key, rows in ox.get("batched", {}).items():
        size, conc = rows[0]["events_per_req"], rows[0]["conc"]
        a = vals(rows, "events_per_s")
        label = "one envelope per request" if size == 1 else f"{size} events per body ({rows[0]['request_bytes'] / 1e3:,.0f} KB)"
        add(f"| `/api/v1/ingest` events/s, {label}, c{conc} (peer: its W2 c16) | {bn:,} | {cell(a)} | {cell(peer_c16)} | {ratio(a, peer_c16)} |")
    for n in sorted({int(k) for k in list(ours.get("w6", {})) + list(peer.get("w6", {}))}):
        for shape in ("ingest", "sdk", "http-ingest"):
            a = vals(ours.get("w6", {}).get(str(n), {}).get(shape, []), "bytes_per_call")
            b = vals(peer.get("w6", {}).get(str(n), {}).get(shape, []), "bytes_per_call")
            if a or b:
                goal = ""
                if a and b:
                    goal = " ✔ goal" if med(a) <= med(b) / 2 else " ✘ goal"
                add(f"| W6 RSS bytes per stored call, {shape} records | {n:,} | {cell(a)} | {cell(b)} | {ratio(a, b)}{goal} |")
    add("")
    add(f"W6 goal: ≤ half the peer's bytes/call (published 23.7 KB → {GOAL_W6_BYTES:,.0f} B; ✔/✘ above compares with "
        "half of the peer measured in this session). patter-dash's figure includes its SSE replay ring "
        "(the last 10,000 published events, pre-encoded).\n")

    # ---------------------------------------------------------------- issue 2
    add("## 2. REST reads and export\n")
    add("W3: `wrk -t1 -c16`, requests/s (p99 ms).\n")
    add("| endpoint | N | patter-dash req/s | peer req/s | ratio | patter-dash p99 ms | peer p99 ms |")
    add("|---|---|---|---|---|---|---|")
    eps = ["calls_limit50", "call_by_id_old", "analytics_overview", "analytics_costs"]
    for k in eps:
        for n in sizes:
            a = ours.get("w3", {}).get(str(n), {}).get("runs", {}).get(k, [])
            b = peer.get("w3", {}).get(str(n), {}).get("runs", {}).get(k, [])
            if a or b:
                add(f"| {k} | {n:,} | {cell(vals(a, 'req_per_s'))} | {cell(vals(b, 'req_per_s'))} | "
                    f"{ratio(vals(a, 'req_per_s'), vals(b, 'req_per_s'))} | {cell(vals(a, 'p99_ms'))} | {cell(vals(b, 'p99_ms'))} |")
    if ox.get("list_full"):
        a = vals(ox["list_full"], "req_per_s")
        b = vals(peer.get("w3", {}).get(str(bn), {}).get("runs", {}).get("calls_limit50", []), "req_per_s")
        add(f"| calls?limit=50&full=1 (full records, as the peer's list) | {bn:,} | {cell(a)} | {cell(b)} | {ratio(a, b)} | "
            f"{cell(vals(ox['list_full'], 'p99_ms'))} | – |")
    add("")
    if oc.get("w3clean") or pc.get("w3clean"):
        cn = oc.get("meta", {}).get("n") or pc.get("meta", {}).get("n")
        dur = (oc.get("w3clean") or pc.get("w3clean"))["dur"]
        add(f"W3 again at N={cn:,} on a fresh server per target, {dur:.0f} s per endpoint, each run started only "
            "after the server had drained the previous endpoint's backlog (`bench/extras.py --only w3clean`):\n")
        add("| endpoint | N | patter-dash req/s | peer req/s | ratio | patter-dash p50 / p99 ms | peer p50 / p99 ms |")
        add("|---|---|---|---|---|---|---|")
        for k in eps:
            a = oc.get("w3clean", {}).get("runs", {}).get(k, [])
            b = pc.get("w3clean", {}).get("runs", {}).get(k, [])
            add(f"| {k} | {cn:,} | {cell(vals(a, 'req_per_s'))} | {cell(vals(b, 'req_per_s'))} | "
                f"{ratio(vals(a, 'req_per_s'), vals(b, 'req_per_s'))} | {cell(vals(a, 'p50_ms'))} / {cell(vals(a, 'p99_ms'))} | "
                f"{cell(vals(b, 'p50_ms'))} / {cell(vals(b, 'p99_ms'))} |")
        add("")
    if sizes:
        lo, hi = str(sizes[0]), str(sizes[-1])
        add(f"Flatness (patter-dash req/s at N={int(hi):,} ÷ at N={int(lo):,}): " + ", ".join(
            f"{k} {ratio(vals(ours.get('w3', {}).get(hi, {}).get('runs', {}).get(k, []), 'req_per_s'), vals(ours.get('w3', {}).get(lo, {}).get('runs', {}).get(k, []), 'req_per_s'))}"
            for k in eps) + ".\n")
        add(f"Response sizes at N={int(hi):,} (bytes): " + "; ".join(
            f"{k} ours {ours.get('w3', {}).get(hi, {}).get('response', {}).get(k, {}).get('bytes', '–')} / peer "
            f"{peer.get('w3', {}).get(hi, {}).get('response', {}).get(k, {}).get('bytes', '–')}" for k in eps) + ".\n")
    add("W4: one export request per run on a fresh connection.\n")
    add("| export | N | figure | patter-dash | peer | ratio |")
    add("|---|---|---|---|---|---|")
    for fmt_ in ("csv", "json"):
        for n in sizes:
            a = ours.get("w4", {}).get(str(n), {}).get(fmt_, [])
            b = peer.get("w4", {}).get(str(n), {}).get(fmt_, [])
            if not (a or b):
                continue
            rows_a = a[0].get("rows") if a else None
            rows_b = b[0].get("rows") if b else None
            add(f"| {fmt_} | {n:,} | rows returned | {fmt(rows_a, 0) if rows_a is not None else '–'} | {fmt(rows_b, 0) if rows_b is not None else '–'} | |")
            add(f"| {fmt_} | {n:,} | wall s | {cell(vals(a, 'wall_s'))} | {cell(vals(b, 'wall_s'))} | {ratio(vals(a, 'wall_s'), vals(b, 'wall_s'))} |")
            pa = [r["wall_s"] / rows_a * 1e6 for r in a] if rows_a else []
            pb = [r["wall_s"] / rows_b * 1e6 for r in b] if rows_b else []
            add(f"| {fmt_} | {n:,} | µs per row | {cell(pa)} | {cell(pb)} | {ratio(pa, pb)} |")
            add(f"| {fmt_} | {n:,} | response MB | {cell([r['bytes'] / 1e6 for r in a])} | {cell([r['bytes'] / 1e6 for r in b])} | |")
            add(f"| {fmt_} | {n:,} | server peak RSS growth MB (first request) | {cell(vals(a, 'peak_rss_growth_mb'))} ({fmt(a[0]['peak_rss_growth_mb']) if a else '–'}) | "
                f"{cell(vals(b, 'peak_rss_growth_mb'))} ({fmt(b[0]['peak_rss_growth_mb']) if b else '–'}) | |")
    add("")
    if ox.get("pause") or px.get("pause"):
        add(f"Pause seen by a concurrent health poller (one GET every 10 ms on its own connection; patter-dash "
            f"`/api/v1/health`, peer `/health`) while one long request runs, N={bn:,}:\n")
        add("| long request | patter-dash: wall s, poller max / p50 ms (polls) | peer: wall s, poller max / p50 ms (polls) |")
        add("|---|---|---|")
        names = {"/api/v1/export/json": "/api/dashboard/export/calls?format=json",
                 "/api/v1/export/csv": "/api/dashboard/export/calls?format=csv",
                 "/api/v1/analytics/overview": "/api/v1/analytics/overview",
                 "/api/v1/analytics/costs": "/api/v1/analytics/costs"}
        for ours_path, peer_path in names.items():
            a = [p for p in ox.get("pause", []) if p["slow_request"] == f"GET {ours_path}"]
            b = [p for p in px.get("pause", []) if p["slow_request"] == f"GET {peer_path}"]

            def desc(rows):
                if not rows:
                    return "–"
                return "; ".join(f"{r['slow_wall_s']:.2f} s, {fmt(r['probe_max_ms'])} / {fmt(r['probe_p50_ms'])} ms ({r['probe_count']})"
                                 if r["probe_count"] else f"{r['slow_wall_s']:.3f} s, no poll completed during it" for r in rows)
            add(f"| {ours_path} | {desc(a)} | {desc(b)} |")
        add("")

    # ---------------------------------------------------------------- issue 3
    add("## 3. Live: SSE fan-out (W5) and soak\n")
    add("W5 via `bench/w5.py` (the harness's W5 with a 2xx-accepting publisher and a spec-compliant subscriber), "
        "fresh server per run, N=500, 50 lifecycles = 100 events.\n")
    add("| case | patter-dash p50 / p99 ms | peer p50 / p99 ms | p99 ratio | lost (ours / peer) | dropped | server CPU % (ours / peer) | ingest POST p99 ms (ours / peer) |")
    add("|---|---|---|---|---|---|---|---|")
    for key in ("S100_paced", "S100_burst", "S1000_paced", "S1000_burst"):
        a, b = ours.get("w5", {}).get(key, []), peer.get("w5", {}).get(key, [])
        if not (a or b):
            continue
        add(f"| {key} | {cell(vals(a, 'p50_ms'))} / {cell(vals(a, 'p99_ms'))} | {cell(vals(b, 'p50_ms'))} / {cell(vals(b, 'p99_ms'))} | "
            f"{ratio(vals(a, 'p99_ms'), vals(b, 'p99_ms'))} | {cell(vals(a, 'events_lost'))} / {cell(vals(b, 'events_lost'))} | "
            f"{cell(vals(a, 'subscribers_dropped'))} / {cell(vals(b, 'subscribers_dropped'))} | "
            f"{cell(vals(a, 'server_cpu_pct'))} / {cell(vals(b, 'server_cpu_pct'))} | {cell(vals(a, 'post_p99_ms'))} / {cell(vals(b, 'post_p99_ms'))} |")
    add("")
    a = ours.get("w5", {}).get("S1000_paced", [])
    if a:
        add(f"Goal S=1000 paced p99 ≤ 100 ms: {'met' if med(vals(a, 'p99_ms')) <= 100 else 'missed'} "
            f"(median {fmt(med(vals(a, 'p99_ms')))} ms over {len(a)} runs).\n")
    if soak:
        r, c = soak.get("results", {}), soak.get("checks", {})
        add(f"Soak (`bench/soak.py`): {soak['meta']['S']} SSE clients for {soak['meta']['seconds']:.0f} s, "
            f"N={soak['meta']['n']:,}, ingest {soak['meta']['rate_lifecycles_per_s']:.0f} lifecycles/s, "
            f"REST {soak['meta']['rest_rate']:.0f} GET/s: **{'PASS' if soak.get('pass') else 'FAIL'}**.\n")
        add(f"- events published {r.get('events_published')}, every subscriber received min/max "
            f"{r.get('subscriber_events_min')}/{r.get('subscriber_events_max')}; errors {r.get('swarm', {}).get('n_errors')}")
        add(f"- REST p50 / p95 / p99 / max: {fmt(r.get('rest_p50_ms'))} / {fmt(r.get('rest_p95_ms'))} / "
            f"{fmt(r.get('rest_p99_ms'))} / {fmt(r.get('rest_max_ms'))} ms ({r.get('rest_requests')} requests, "
            f"{r.get('rest_errors')} errors); ingest POST p99 {fmt(r.get('post_p99_ms'))} ms; server CPU {fmt(r.get('server_cpu_pct'))} %")
        b, e, af = soak.get("baseline", {}), soak.get("during_end", {}), soak.get("after", {})
        add(f"- worker fds {b.get('fds')} → {e.get('fds')} (during) → {af.get('fds')} (after); RSS "
            f"{fmt(b.get('rss_mb'))} → {fmt(e.get('rss_mb'))} → {fmt(af.get('rss_mb'))} MB; the server saw every "
            f"closed stream after {soak.get('subscribers_gone_after_s')} s")
        for k, v in c.items():
            add(f"- {'PASS' if v else 'FAIL'}: {k}")
        add("")
    if var:
        add("## Variant: patter-dash with the access log off (N=500)\n")
        add("| figure | shipped (access log on) | access log off | peer (off) |")
        add("|---|---|---|---|")
        for c in ("c1", "c16"):
            add(f"| W2 ingest req/s {c} | {cell(vals(ours.get('w2', {}).get('500', {}).get(c, []), 'req_per_s'))} | "
                f"{cell(vals(var.get('w2', {}).get('500', {}).get(c, []), 'req_per_s'))} | "
                f"{cell(vals(peer.get('w2', {}).get('500', {}).get(c, []), 'req_per_s'))} |")
        for k in eps:
            add(f"| W3 {k} req/s | {cell(vals(ours.get('w3', {}).get('500', {}).get('runs', {}).get(k, []), 'req_per_s'))} | "
                f"{cell(vals(var.get('w3', {}).get('500', {}).get('runs', {}).get(k, []), 'req_per_s'))} | "
                f"{cell(vals(peer.get('w3', {}).get('500', {}).get('runs', {}).get(k, []), 'req_per_s'))} |")
        add("")
    with open(os.path.join(d, "summary.md"), "w") as fh:
        fh.write("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
