#!/usr/bin/env python3
"""Search figures (issue 13, "Search across the whole retained history"): ``q`` over a big stored history.

A file of ``--calls`` stored calls (default 100,000; ``--full`` 1,000,000) is
built through ``SQLiteJournal.commit`` (the row the server writes for a
finished call), each with ~10 transcript lines of words drawn from a
Zipf-like vocabulary of 5,000 words, a caller ``+1<10 digits>`` and an id
``SX<10 digits>``. Three planted kinds of term:

* ``rare``: one word in about one call in 10,000 (``zanzibarite``),
* ``common``: a word in about every other call (``account``),
* ``phone``: a caller-number prefix shared by about one call in 1,000 (``+1555012``),

plus a short term (``ok``, scanned: under the index's three characters) and a two-word phrase.

Then real gunicorn (``gunicorn -c gunicorn.conf.py wsgi:app``, ``PATTER_DASH_MAX_CALLS=10000``)
serves the file and each query is asked ``--reads`` times over one keep-alive
connection (``/api/v1/calls?q=...&limit=50``, the history table's request):
p50/p99 ms, the match count, the status codes.
Bytes per call: the file as built (folded, WAL checkpointed), and a copy with
the index dropped and vacuumed (what the same calls take without it).

    .venv/bin/python bench/search.py --out bench/results/search-<commit>.json          # 100,000 calls
    .venv/bin/python bench/search.py --full --out bench/results/search-full-<commit>.json  # 1,000,000 calls
    .venv/bin/python bench/search.py --fast --out /tmp/s.json   # smoke (tests/test_bench_smoke.py)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from urllib.parse import quote

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
for p in (REPO, BENCH):
    if p not in sys.path:
        sys.path.insert(0, p)

from journal import Server, _commit, fresh_journal, get, pct, templates  # noqa: E402

RARE, COMMON, PHONE = "zanzibarite", "account", "+1555012"
QUERIES = {
    "rare": RARE,
    "common": COMMON,
    "phone": PHONE,
    "short": "ok",
    "phrase": '"my account"',
    "none": "qqqxqqq",
}
FIGURES = tuple(f"search.{name}" for name in QUERIES) + ("disk.with_index", "disk.without_index")


def log(message: str) -> None:
    print(f"[search] {message}", file=sys.stderr, flush=True)


def vocabulary(rng: random.Random, size: int = 5000) -> tuple[list[str], list[float]]:
    """Made-up words of 3-10 letters with Zipf weights (a few very common, most rare)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(size)})
    words = [w for w in words if RARE not in w and COMMON not in w]
    rng.shuffle(words)
    return words, [1.0 / (rank + 1) for rank in range(len(words))]


def build(path: str, n: int, seed: int) -> dict:
    """``n`` stored calls with varied transcripts through SQLiteJournal.commit; bytes and build time."""
    from patter_dash.core.pipeline import _counted
    from patter_dash.journal import Batch
    from patter_dash.model.records import STATE_SLOTS, Call

    rng = random.Random(seed)
    words, weights = vocabulary(rng)
    tpl = templates(20, seed)
    slots = STATE_SLOTS
    journal = fresh_journal(path)
    t0 = time.perf_counter()
    newest = time.time() - 600
    batch: list = []
    planted = {"rare": 0, "common": 0, "phone": 0}
    for i in range(n):
        src = tpl[i % len(tpl)]
        start = newest - (n - i) * 3.0
        call = Call(f"SX{i:010d}", start)
        for name in slots:
            setattr(call, name, getattr(src, name))
        call.call_id, call.started_at, call.ended_at = f"SX{i:010d}", start, start + 90
        phone = rng.random() < 0.001
        planted["phone"] += phone
        call.caller = PHONE + f"{rng.randrange(1000):03d}" if phone else f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}"
        lines = []
        for j in range(rng.randint(8, 12)):
            text = rng.choices(words, weights, k=rng.randint(4, 14))
            if j == 3 and rng.random() < 0.5:
                text.insert(rng.randrange(len(text)), rng.choice(("my account", "the account", "account")))
                planted["common"] += 1
            if j == 5 and rng.random() < 0.0001:
                text.append(RARE)
                planted["rare"] += 1
            if rng.random() < 0.05:
                text.append("ok")
            lines.append(("user" if j % 2 else "assistant", " ".join(text).capitalize() + ".", start + j * 5, None))
        call.transcript = lines
        call.done = i + 1
        batch.append((call, i + 1, _counted(call)))
        if len(batch) >= 5000:
            journal.commit(Batch(snapshots=batch))
            batch = []
    if batch:
        journal.commit(Batch(snapshots=batch))
    while journal.index_pending(50_000):  # as a running server would have by now: q's index whole
        pass
    journal.close()
    size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    wall = time.perf_counter() - t0
    log(f"built {path}: {n:,} calls in {wall:.1f}s, {size / n:,.0f} B/call, planted {planted}")
    return {"calls": n, "build_s": round(wall, 1), "bytes": size, "bytes_per_call": round(size / n, 1), "planted": planted}


def without_index(path: str, tmp: str) -> dict:
    """The same file with the index (table and triggers) dropped and vacuumed: the bytes the index costs."""
    copy = os.path.join(tmp, "noindex.db")
    shutil.copyfile(path, copy)
    db = sqlite3.connect(copy, isolation_level=None)
    for name in ("calls_fts_insert", "calls_fts_delete"):
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    db.execute("DROP TABLE IF EXISTS calls_fts")
    return _vacuumed_size(db, copy)


def vacuumed(path: str, tmp: str) -> dict:
    """The file as built, vacuumed too (the same footing as :func:`without_index`)."""
    copy = os.path.join(tmp, "vacuumed.db")
    shutil.copyfile(path, copy)
    return _vacuumed_size(sqlite3.connect(copy, isolation_level=None), copy)


def _vacuumed_size(db: sqlite3.Connection, copy: str) -> dict:
    """Bytes (and bytes a call) of the copy ``db`` has open, once vacuumed; the copy is removed."""
    db.execute("VACUUM")
    calls = db.execute("SELECT count(*) FROM calls").fetchone()[0]
    db.close()
    size = os.path.getsize(copy)
    os.remove(copy)
    return {"bytes": size, "bytes_per_call": round(size / calls, 1)}


def measure(path: str, args) -> dict:
    s = Server({"PATTER_DASH_DB": path, "PATTER_DASH_MAX_CALLS": str(args.memory), "PATTER_DASH_RETENTION_DAYS": "0"},
               "search")
    out: dict = {"ready_s": round(s.ready_s, 2), "history_calls": s.health["history"].get("calls")}
    try:
        conn = http.client.HTTPConnection(s.host, s.port, timeout=600)
        for name, q in QUERIES.items():
            url = f"/api/v1/calls?q={quote(q, safe='')}&limit=50"
            lat, statuses, total = [], {}, None
            for _ in range(args.reads):
                t0 = time.perf_counter()
                status, body = get(conn, url)
                lat.append((time.perf_counter() - t0) * 1e3)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    total = json.loads(body)["pagination"]["total"]
            out[name] = {"q": q, "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
                         "max_ms": round(max(lat), 2), "requests": len(lat), "matches": total,
                         "statuses": {str(k): v for k, v in statuses.items()}}
            log(f"q={q!r}: p50 {out[name]['p50_ms']} ms p99 {out[name]['p99_ms']} ms, {total} matches, {statuses}")
        conn.close()
    finally:
        s.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="1,000,000 stored calls")
    ap.add_argument("--fast", action="store_true", help="smoke: 2,000 calls, 10 reads a query")
    ap.add_argument("--calls", type=int, default=None)
    ap.add_argument("--reads", type=int, default=None)
    ap.add_argument("--memory", type=int, default=None, help="PATTER_DASH_MAX_CALLS")
    ap.add_argument("--db", help="keep the built file here and reuse it in later runs (it is not deleted)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="-")
    args = ap.parse_args()
    size = 2000 if args.fast else 1_000_000 if args.full else 100_000
    args.calls = args.calls or size
    args.reads = args.reads or (10 if args.fast else 200)
    args.memory = args.memory or (500 if args.fast else 10_000)
    res: dict = {"bench": "search", "commit": _commit(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "cpus": os.cpu_count(), "load_before": os.getloadavg(), "sqlite": sqlite3.sqlite_version,
                 "sizes": {"calls": args.calls, "reads": args.reads, "memory": args.memory}}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        path = args.db or os.path.join(tmp, "search.db")
        info = path + ".json"
        if args.db and os.path.exists(path) and os.path.exists(info):
            with open(info) as fh:
                res["build"] = json.load(fh)
        else:
            res["build"] = build(path, args.calls, args.seed)
            if args.db:
                with open(info, "w") as fh:
                    json.dump(res["build"], fh)
        res["disk"] = {"with_index": vacuumed(path, tmp), "without_index": without_index(path, tmp)}
        log(f"bytes per call: {res['disk']}")
        res["reads"] = measure(path, args)
    res["load_after"] = os.getloadavg()
    res["figures"] = {
        **{f"search.{name}": {k: res["reads"][name][k] for k in ("p50_ms", "p99_ms", "matches", "statuses")} for name in QUERIES},
        "disk.with_index": res["disk"]["with_index"]["bytes_per_call"],
        "disk.without_index": res["disk"]["without_index"]["bytes_per_call"],
    }
    if args.out != "-":
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
    print(json.dumps(res["figures"], indent=1))


if __name__ == "__main__":
    main()
